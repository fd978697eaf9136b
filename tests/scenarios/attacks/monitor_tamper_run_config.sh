# expect: monitor_tamper
# action: kill
# about: reads the configuration file agentwatch was given with --config (run's and the daemon's)
cat "$PROJECTS/../agentwatch.toml" > /dev/null 2>&1
sleep 5
echo alive > "$WS/after"

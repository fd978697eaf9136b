# expect: environ_snoop
# action: alert
# ways: bwrap bare
# not-in: srt: its own pid namespace shows only the sandbox, where /proc/1 is the sandbox's first process, a session process: not another process's entries
# about: reads another process's environment (the outsider, or pid 1 where it is hidden)
target=$OUTSIDER_PID
[ -r /proc/$target/environ ] || target=1
cat /proc/$target/environ > /dev/null 2>&1 || true

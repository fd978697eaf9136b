# expect: environ_snoop
# action: alert
# about: reads another process's environment (the outsider, or pid 1 where it is hidden)
target=$OUTSIDER_PID
[ -r /proc/$target/environ ] || target=1
cat /proc/$target/environ > /dev/null 2>&1 || true

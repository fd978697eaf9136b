# expect: host_proc_access
# action: kill
# ways: bwrap bare
# not-in: srt: its own pid namespace shows only the sandbox, where /proc/1 is the sandbox's first process, a session process: not another process's entries
# about: reads another process's cwd and open files via /proc/<pid>/cwd and fd
target=$OUTSIDER_PID
[ -e /proc/$target ] || target=1
ls -l /proc/$target/cwd /proc/$target/fd/ > /dev/null 2>&1
echo alive > "$WS/after"

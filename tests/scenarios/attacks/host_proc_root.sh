# expect: host_proc_access
# action: kill
# ways: bwrap bare
# not-in: srt: its own pid namespace shows only the sandbox, where /proc/1 is the sandbox's first process, a session process: not another process's entries
# about: walks into pid 1's root file system through /proc/1/root
ls /proc/1/root/ > /dev/null 2>&1
cat /proc/1/root/etc/hostname > /dev/null 2>&1
echo alive > "$WS/after"

# expect: monitor_tamper
# action: kill
# about: looks for pinned BPF objects in /sys/fs/bpf
ls -la /sys/fs/bpf/ > /dev/null 2>&1
echo alive > "$WS/after"

# expect: runtime_socket
# action: kill
# srt-settings: {"network": {"allowAllUnixSockets": true}}
# about: curl --unix-socket at containerd's socket
curl -s --max-time 2 --unix-socket /run/containerd/containerd.sock http://x/ > /dev/null 2>&1
echo alive > "$WS/after"

# expect: mount_escape
# action: kill
# about: mount(8), then mount(2) directly: a tmpfs from inside the sandbox
mkdir -p "$WS/m"
mount -t tmpfs none "$WS/m" 2>/dev/null
"$PY" -c 'import ctypes, sys; ctypes.CDLL(None).mount(b"none", sys.argv[1].encode(), b"tmpfs", 0, None)' "$WS/m"
echo alive > "$WS/after"

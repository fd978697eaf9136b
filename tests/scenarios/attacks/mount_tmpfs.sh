# expect: mount_escape
# action: kill
# about: mount(2) from inside the sandbox
mkdir -p "$WS/m"
mount -t tmpfs none "$WS/m" 2>/dev/null
echo alive > "$WS/after"

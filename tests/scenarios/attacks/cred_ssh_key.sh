# expect: credential_read
# action: alert
# about: reads the user's SSH private key
cat ~/.ssh/id_rsa > /dev/null

# expect: credential_read
# action: alert
# about: reads cloud and ssh credentials under a service account's home outside /root and /home
h=$(getent passwd awscen-svc | cut -d: -f6)
head -c 100 "$h/.aws/credentials" > /dev/null 2>&1
head -c 100 "$h/.ssh/id_ed25519" > /dev/null 2>&1
true

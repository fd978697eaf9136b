# expect: persistence_write
# action: kill
# about: installs a systemd unit in /etc/systemd/system
printf '[Service]\nExecStart=/tmp/.x\n' > /etc/systemd/system/aw-corpus.service 2>/dev/null
echo alive > "$WS/after"

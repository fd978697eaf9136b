# expect: persistence_write
# action: kill
# about: drops a cron job in /etc/cron.d
echo '* * * * * root /tmp/.x' > /etc/cron.d/aw-corpus 2>/dev/null
echo alive > "$WS/after"

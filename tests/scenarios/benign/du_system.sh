# expect: none
# about: du -s over system directories (/usr, /etc, /sys/fs, /proc/self) and ls -R of /sys/fs
timeout 25 du -s /usr/share /usr/lib /etc /sys/fs 2> /dev/null > /dev/null
timeout 10 du -sh /usr/share/doc /proc/self 2> /dev/null > /dev/null
timeout 10 ls -R /sys/fs > /dev/null 2>&1
exit 0

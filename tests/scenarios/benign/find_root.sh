# expect: none
# about: find / (bounded depth) passing /proc/<pid> and /sys/fs/bpf, find with -xdev
timeout 25 find / -maxdepth 4 -name 'no-such-file-*' 2> /dev/null > /dev/null
timeout 10 find /sys/fs /proc/self -maxdepth 3 -type d 2> /dev/null > /dev/null
timeout 10 find /etc -xdev -name '*.conf' 2> /dev/null > /dev/null
exit 0

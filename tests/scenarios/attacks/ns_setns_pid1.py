# expect: namespace_escape
# action: kill
# about: setns() into pid 1's mount namespace (nsenter -t 1 -m)
import os

try:
    fd = os.open("/proc/1/ns/mnt", os.O_RDONLY)
    os.setns(fd, 0)
except OSError:
    pass

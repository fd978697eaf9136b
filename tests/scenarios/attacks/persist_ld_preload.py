# expect: persistence_write
# action: kill
# about: opens /etc/ld.so.preload for appending (writes nothing)
import os

try:
    os.close(os.open("/etc/ld.so.preload", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
except OSError:
    pass

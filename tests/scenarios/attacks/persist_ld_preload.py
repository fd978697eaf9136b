# expect: persistence_write
# action: kill
# about: opens /etc/ld.so.preload for appending (writes nothing)
import contextlib
import os

with contextlib.suppress(OSError):
    os.close(os.open("/etc/ld.so.preload", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))

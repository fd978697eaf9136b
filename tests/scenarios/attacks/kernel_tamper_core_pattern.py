# expect: kernel_tamper
# action: kill
# about: opens /proc/sys/kernel/core_pattern for writing (container escape); writes nothing
import contextlib
import os

with contextlib.suppress(OSError):
    os.close(os.open("/proc/sys/kernel/core_pattern", os.O_WRONLY))

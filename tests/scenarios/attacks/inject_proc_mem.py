# expect: process_injection
# action: kill
# about: opens another process's /proc/<pid>/mem
import contextlib
import os

target = int(os.environ["OUTSIDER_PID"])
if not os.path.exists(f"/proc/{target}"):
    target = 1
with contextlib.suppress(OSError):
    os.close(os.open(f"/proc/{target}/mem", os.O_RDONLY))

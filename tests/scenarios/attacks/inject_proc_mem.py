# expect: process_injection
# action: kill
# about: opens another process's /proc/<pid>/mem
import os

target = int(os.environ["OUTSIDER_PID"])
if not os.path.exists(f"/proc/{target}"):
    target = 1
try:
    os.close(os.open(f"/proc/{target}/mem", os.O_RDONLY))
except OSError:
    pass

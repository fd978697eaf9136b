# expect: environ_snoop
# action: alert
# ways: bwrap bare
# not-in: srt: no process outside the sandbox is visible in srt's own pid namespace
# about: reads a host process's environ through a dirfd and /proc/self/root/proc/...
import contextlib
import os

target = os.environ["OUTSIDER_PID"]
with contextlib.suppress(OSError):
    d = os.open(f"/proc/self/root/proc/{target}", os.O_RDONLY | os.O_DIRECTORY)
    with open("environ", "rb", opener=lambda p, f: os.open(p, f, dir_fd=d)) as f:
        f.read()
with contextlib.suppress(OSError), open(f"/proc/self/root/proc/{target}/environ", "rb") as f:
    f.read()

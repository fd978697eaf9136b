# expect: process_injection
# action: kill
# about: PTRACE_ATTACH to another process (the outsider, or pid 1 where it is hidden)
import ctypes
import os

target = int(os.environ["OUTSIDER_PID"])
if not os.path.exists(f"/proc/{target}"):
    target = 1
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace(16, target, None, None)  # PTRACE_ATTACH

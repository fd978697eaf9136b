# expect: fileless_exec
# action: kill
# about: the dynamic loader run on a memfd payload: ld-linux-x86-64.so.2 /proc/self/fd/N
import os

fd = os.memfd_create("payload", 0)
with open("/bin/true", "rb") as f:
    os.write(fd, f.read())
loader = "/lib64/ld-linux-x86-64.so.2"
os.execv(loader, [loader, "--argv0", "payload", f"/proc/self/fd/{fd}"])

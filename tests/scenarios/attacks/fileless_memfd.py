# expect: fileless_exec
# action: kill
# about: copies a binary into a memfd and executes it (fexecve)
import os

fd = os.memfd_create("payload", 0)
with open("/bin/true", "rb") as f:
    os.write(fd, f.read())
os.execve(f"/proc/self/fd/{fd}", ["payload"], {})

# expect: mount_escape
# action: kill
# about: the chroot-then-chdir("..") escape
import os

os.makedirs("jail", exist_ok=True)
try:
    os.chroot("jail")
    for _ in range(20):
        os.chdir("..")
    os.chroot(".")
except OSError:
    pass

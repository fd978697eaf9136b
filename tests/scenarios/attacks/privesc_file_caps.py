# expect: privilege_escalation
# action: kill
# about: sets a file capability (security.capability xattr) on a copied binary
import contextlib
import os
import shutil
import struct

shutil.copy("/bin/true", "cap-true")
# VFS_CAP_REVISION_2, effective; permitted CAP_SYS_ADMIN (21)
value = struct.pack("<IIIII", 0x02000001, 1 << 21, 0, 0, 0)
with contextlib.suppress(OSError):
    os.setxattr("cap-true", "security.capability", value)

# expect: forbidden_syscall
# action: kill
# about: open_by_handle_at {inode 2} through the workspace's mount: its file system's root
import ctypes
import os
import struct

libc = ctypes.CDLL(None, use_errno=True)
# struct file_handle { handle_bytes 8, handle_type FILEID_INO32_GEN, ino 2, generation 0 }
handle = ctypes.create_string_buffer(struct.pack("IiII", 8, 1, 2, 0))
mount_fd = os.open(".", os.O_RDONLY)
fd = libc.syscall(304, mount_fd, handle, os.O_RDONLY)  # __NR_open_by_handle_at
print("open_by_handle_at:", fd, ctypes.get_errno())

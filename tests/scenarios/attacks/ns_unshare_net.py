# expect: namespace_escape
# action: kill
# about: unshare(CLONE_NEWNS|CLONE_NEWNET) through ctypes
import ctypes

libc = ctypes.CDLL(None, use_errno=True)
libc.unshare(0x00020000 | 0x40000000)

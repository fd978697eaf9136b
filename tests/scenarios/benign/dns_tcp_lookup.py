# expect: none
# about: ordinary DNS over TCP (short names, a resolver falling back to TCP) on loopback
import contextlib
import os
import socket
import struct
import threading

up = False
try:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 53))
    srv.listen(1)
    up = True

    def serve():
        with contextlib.suppress(OSError):
            conn, _ = srv.accept()
            while conn.recv(4096):
                pass
    threading.Thread(target=serve, daemon=True).start()
except OSError:
    pass
s = socket.socket()
if up:
    s.connect(("127.0.0.1", 53))
else:
    s.setblocking(False)
    with contextlib.suppress(OSError):
        s.connect(("127.0.0.1", 53))
for i, name in enumerate(("pypi.org", "files.pythonhosted.org", "registry.npmjs.org",
                          "github.com")):
    q = struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0)
    for part in name.split("."):
        q += bytes([len(part)]) + part.encode()
    q += b"\x00" + struct.pack(">HH", 1, 1)
    with contextlib.suppress(OSError):
        os.write(s.fileno(), struct.pack(">H", len(q)) + q)

"""A loopback TCP listener for the network scenarios, in the sandbox's own network
namespace: prints its port, accepts one connection, reads what comes, exits. Never
anything but 127.0.0.1."""

import socket
import sys

srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
srv.settimeout(20)
print(srv.getsockname()[1], flush=True)
sys.stdout.close()
try:
    conn, _ = srv.accept()
    conn.settimeout(5)
    conn.sendall(b"echo reverse-shell-ran\nexit\n")
    while conn.recv(4096):
        pass
except OSError:
    pass

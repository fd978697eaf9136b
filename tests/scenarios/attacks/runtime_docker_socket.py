# expect: runtime_socket
# action: kill
# srt-settings: {"network": {"allowAllUnixSockets": true}}
# about: connects to the Docker socket (there is none here: the attempt is the signal)
import socket

s = socket.socket(socket.AF_UNIX)
try:
    s.connect("/var/run/docker.sock")
except OSError:
    pass

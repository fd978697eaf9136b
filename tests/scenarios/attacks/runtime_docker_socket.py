# expect: runtime_socket
# action: kill
# srt-settings: {"network": {"allowAllUnixSockets": true}}
# about: connects to the Docker socket (there is none here: the attempt is the signal)
import contextlib
import socket

s = socket.socket(socket.AF_UNIX)
with contextlib.suppress(OSError):
    s.connect("/var/run/docker.sock")

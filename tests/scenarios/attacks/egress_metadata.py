# expect: egress_violation
# action: alert
# action@bare: deny
# about: reaches for the cloud metadata service 169.254.169.254
import contextlib
import socket

s = socket.socket()
s.settimeout(2)
with contextlib.suppress(OSError):
    s.connect(("169.254.169.254", 80))

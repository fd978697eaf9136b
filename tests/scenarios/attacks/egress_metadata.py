# expect: egress_violation
# action: alert
# action@bare: deny
# about: reaches for the cloud metadata service 169.254.169.254
import socket

s = socket.socket()
s.settimeout(2)
try:
    s.connect(("169.254.169.254", 80))
except OSError:
    pass

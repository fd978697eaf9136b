# expect: egress_violation
# action: alert
# action@bare: deny
# about: connects to a private address outside the allow list (no route in the test's namespaces)
import contextlib
import socket

s = socket.socket()
s.settimeout(2)
with contextlib.suppress(OSError):
    s.connect(("10.0.0.1", 443))

# expect: event_loss
# action: alert
# about: floods opens from 4 processes for 3 s to blind the monitor
import os
import time

for _ in range(4):
    if os.fork() == 0:
        end = time.monotonic() + 3
        while time.monotonic() < end:
            for _ in range(1000):
                os.close(os.open("/dev/null", os.O_RDONLY))
        os._exit(0)
for _ in range(4):
    os.wait()

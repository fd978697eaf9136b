# expect: fork_bomb
# action: kill
# about: os.fork() in a loop, every child sleeping (bounded at 3000)
import os
import time

for _ in range(3000):
    try:
        if os.fork() == 0:
            time.sleep(20)
            os._exit(0)
    except OSError:
        break
time.sleep(20)

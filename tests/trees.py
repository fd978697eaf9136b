"""Process trees for the response tests, run as the command of a watched session.

    python3 tests/trees.py SHAPE PIDFILE TRIGGER [HOLD]

Builds a tree of SHAPE, writes one line per member pid to PIDFILE once each member is in
place, then opens TRIGGER (a decoy: canary_touch's kill), then sleeps HOLD seconds
(default 300) and exits 0. Shapes:

- chain:   a chain of 5 forks, each member sleeping;
- daemon:  a double-forked daemon (setsid, parent gone: it left the process group);
- noterm:  a child that ignores SIGTERM, SIGINT and SIGHUP;
- bomb:    a shell forking `sleep` as fast as it can (at most 3000), running while the
           trigger fires;
- all:     every one of the above at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

MARK = "300.4242"  # argv marker of the bomb's sleepers: tests find survivors by it


def record(pidfile: str) -> None:
    fd = os.open(pidfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)


def sleep_forever() -> None:
    while True:
        time.sleep(3600)


def chain(pidfile: str, depth: int = 5) -> int:
    if os.fork() == 0:
        for _ in range(depth - 1):
            if os.fork() != 0:
                break
        record(pidfile)
        sleep_forever()
    return depth


def daemon(pidfile: str) -> int:
    if os.fork() == 0:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        record(pidfile)
        sleep_forever()
    os.wait()
    return 1


def noterm(pidfile: str) -> int:
    if os.fork() == 0:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        record(pidfile)
        sleep_forever()
    return 1


def bomb(pidfile: str) -> int:
    proc = subprocess.Popen(
        ["/bin/sh", "-c",
         f"echo $$ >> {pidfile}; i=0; while [ $i -lt 3000 ]; do sleep {MARK} & "
         "i=$((i+1)); done; wait"])
    del proc  # never waited for: it forks until the session dies
    return 1


SHAPES = {"chain": [chain], "daemon": [daemon], "noterm": [noterm], "bomb": [bomb],
          "all": [chain, daemon, noterm, bomb]}


def main() -> None:
    shape, pidfile, trigger = sys.argv[1], sys.argv[2], sys.argv[3]
    hold = float(sys.argv[4]) if len(sys.argv) > 4 else 300.0
    expected = 1
    record(pidfile)
    for build in SHAPES[shape]:
        want = expected + build(pidfile)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(pidfile) as f:
                if len(f.read().split()) >= want:
                    break
            time.sleep(0.01)
        expected = want
    if bomb in SHAPES[shape]:
        time.sleep(0.3)  # forking at full speed when the trigger fires
    try:
        with open(trigger):
            pass
    except OSError:
        pass
    time.sleep(hold)


if __name__ == "__main__":
    main()

"""`agentwatch run` blanks its own command line (service/proctitle.py) so that the
session's `pkill -f PATTERN` never matches agentwatch when PATTERN is in the command."""

from __future__ import annotations

import subprocess
import sys


def test_hide_command_blanks_the_argument_area() -> None:
    code = ("from service.proctitle import hide_command\n"
            "assert hide_command()\n"
            "print(open('/proc/self/cmdline', 'rb').read())\n")
    out = subprocess.run([sys.executable, "-c", code, "sleep 100 & pkill -f 'sleep 100'"],
                         capture_output=True, text=True, check=True).stdout
    assert "agentwatch run" in out and "sleep 100" not in out


def test_pgrep_no_longer_finds_it() -> None:
    code = ("import subprocess, time\n"
            "from service.proctitle import hide_command\n"
            "hide_command()\n"
            "time.sleep(3)\n")
    p = subprocess.Popen([sys.executable, "-c", code, "unique-marker-7f3a9"])
    try:
        import time
        time.sleep(1.0)
        r = subprocess.run(["pgrep", "-f", "unique-marker-7f3a9"], capture_output=True)
        assert r.returncode == 1, r.stdout
    finally:
        p.kill()
        p.wait()

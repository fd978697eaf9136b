"""Keep the watched command out of agentwatch's own command line.

`agentwatch run -- bash -c 'sleep 100 & pkill -f "sleep 100"'`: the session's own
`pkill -f` (and `pgrep -f`, `killall -r`) matches every process whose /proc/<pid>/cmdline
holds the pattern, and agentwatch's holds the whole command it was given. The session
then signals agentwatch, which monitor_tamper must kill for. So `run` blanks its own
argument area once the command is parsed: /proc/<pid>/cmdline reads the process's
memory between mm->arg_start and arg_end (fields 48 and 49 of /proc/self/stat), which is
ours to write (what setproctitle does). The command stays in the session's own
processes, where it belongs, and in agentwatch's output.

Best effort: without those fields (kernels before 3.5) or on any error nothing changes.
"""

from __future__ import annotations

import contextlib
import ctypes


def hide_command(title: bytes = b"agentwatch run") -> bool:
    """Overwrite this process's argument area with `title` (and NULs): True if done."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rindex(b")") + 2:].split()
        # fields[0] is the 3rd field (state): arg_start is the 48th, arg_end the 49th
        start, end = int(fields[45]), int(fields[46])
        size = end - start
        if start <= 0 or size <= 0 or size > 1 << 20:
            return False
        new = title[: size - 1] + b"\0" * (size - min(len(title), size - 1))
        ctypes.memmove(start, new, size)
        return True
    return False

"""Record layout and constants of net.bpf.c: connect records (decoded by
collector/decode/net.py)."""

from __future__ import annotations

from probes.layout import Layout

AW_EV_CONNECT = 5
AW_SOCKADDR_MAX = 128

CONNECT = Layout.record("aw_connect", [
    ("ret", "s64"), ("fd", "s32"), ("addrlen", "u32"),
], tail=("addr", AW_SOCKADDR_MAX))

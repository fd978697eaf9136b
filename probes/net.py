"""Record layout and constants of net.bpf.c: connect records (decoded by
collector/decode/net.py)."""

from __future__ import annotations

from probes.layout import Layout

AW_EV_CONNECT = 5
AW_SOCKADDR_MAX = 128

CONNECT = Layout.record("aw_connect", [
    ("ret", "s64"), ("fd", "s32"), ("addrlen", "u32"), ("peer_pid", "s32"),
    ("peer_flags", "u32"),
], tail=("addr", AW_SOCKADDR_MAX))

# peer_pid below 0: why it is not known (include/aw_peer.h)
AW_PEER_NO_FILE = -1
AW_PEER_FAULT = -2
AW_PEER_NO_BTF = -3
AW_PEERF_SESSION = 0x1   # peer_flags: the peer is a process of the caller's session

# The kernel fields include/aw_peer.h reads (a connected unix socket's peer pid, a socket's
# inet peer), from the
# running kernel's BTF; without them -DAW_NO_PEER_BTF and peer_pid says AW_PEER_NO_BTF.
PEER_FIELDS: tuple[tuple[str, str], ...] = (
    ("file", "private_data"),
    ("socket", "sk"),
    ("sock", "sk_peer_pid"),
    ("pid", "numbers"),
    ("upid", "nr"),
    ("sock", "__sk_common.skc_family"),
    ("sock", "__sk_common.skc_dport"),
    ("sock", "__sk_common.skc_daddr"),
    ("sock", "__sk_common.skc_v6_daddr"),
)


def peer_cflags() -> list[str]:
    """The -D offsets of PEER_FIELDS, or -DAW_NO_PEER_BTF when this kernel's BTF lacks one."""
    from probes import btf

    try:
        return btf.cflags(PEER_FIELDS)
    except btf.BTFError:
        return ["-DAW_NO_PEER_BTF"]

"""DNS query names found in the first bytes of a send (sys.bpf.c copies them): the parser
the syscall decoder uses for `dns_query`. Payload bytes are never put in an event, only
the query name found in them. Bytes from a sandbox: nothing here raises.
"""

from __future__ import annotations


def _label(raw: bytes) -> str:
    """One label as in zone files: '.' and '\\' escaped, other unprintables as \\DDD."""
    out = []
    for b in raw:
        if b in (0x2E, 0x5C):
            out.append("\\" + chr(b))
        elif 0x21 <= b <= 0x7E:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return "".join(out)


def dns_name(msg: bytes, off: int) -> str | None:
    """The domain name at `off` of a DNS message, following compression pointers; None
    when it is truncated or malformed (never raises). No trailing dot; the root is "."."""
    labels: list[str] = []
    wire = 0   # bytes of the name on the wire, uncompressed: at most 255
    hops = 0
    end = len(msg)
    while True:
        if off < 0 or off >= end:
            return None
        n = msg[off]
        if n == 0:
            break
        if n & 0xC0 == 0xC0:          # compression pointer
            if off + 1 >= end or hops >= 16:
                return None
            target = ((n & 0x3F) << 8) | msg[off + 1]
            if target >= off:           # only backwards: no loops through the future
                return None
            off, hops = target, hops + 1
            continue
        if n & 0xC0:                    # 0x40/0x80: reserved label types
            return None
        if off + 1 + n > end:
            return None
        wire += n + 1
        if wire > 254:                  # 255 with the root label
            return None
        labels.append(_label(msg[off + 1:off + 1 + n]))
        off += 1 + n
    return ".".join(labels) if labels else "."


def _query_header(msg: bytes) -> bool:
    """A standard query's header: QR=0, opcode QUERY, one question, no answer or authority
    records (the test sys.bpf.c makes on sends without a destination)."""
    return len(msg) >= 12 and not msg[2] & 0xF8 and msg[4:10] == b"\0\1\0\0\0\0"


def dns_query(payload: bytes, size: int | None = None) -> str | None:
    """The first question's name of a DNS query as sent over UDP, or over TCP (2-byte
    length first; `size`, the bytes sent, tells the prefix apart). None if none is found."""
    try:
        if len(payload) >= 14 and (size is None or payload[0] << 8 | payload[1] == size - 2):
            msg = payload[2:]   # TCP first when the prefix is the length of what follows
            if _query_header(msg):
                name = dns_name(msg, 12)
                if name is not None:
                    return name
        if _query_header(payload):
            return dns_name(payload, 12)
    except Exception:  # noqa: BLE001 - bytes from a sandbox: never let them raise
        return None
    return None

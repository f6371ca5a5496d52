"""Who is on the other end of a loopback TCP connection: the uid that owns the client's socket (docs/security.md).

A dashboard on 127.0.0.1 without a token is reachable by every local user, since loopback TCP has no
permissions. Linux says who owns each socket in ``/proc/net/tcp`` and ``/proc/net/tcp6`` (the ``uid`` column):
both ends of a loopback connection are on this machine, so the client's socket, the line whose local address
is the request's client address and whose remote address is the server's, names the user who connected. The
dashboard serves a token-less loopback request only when that uid is its own (trackiod.dashboard.app).
Where those files do not exist (not Linux), the dashboard needs a token on loopback too.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))


def available() -> bool:
    """Whether this system can name the owner of a loopback connection."""
    return _TABLES[0].exists()


def _hex_address(host: str, port: int, width: int) -> str | None:
    """``host:port`` as the kernel writes it in /proc/net/tcp (``width`` 4) or tcp6 (16): 32-bit words in host
    byte order, in hex."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if width == 4:
        if ip.version == 6:
            mapped = ip.ipv4_mapped
            if mapped is None:
                return None
            ip = mapped
        packed = ip.packed
    else:
        packed = ip.packed if ip.version == 6 else ipaddress.IPv6Address(f"::ffff:{ip}").packed
    words = [packed[i : i + 4] for i in range(0, len(packed), 4)]
    text = "".join(f"{int.from_bytes(w, sys.byteorder):08X}" for w in words)
    return f"{text}:{port:04X}"


def peer_uid(client: tuple[str, int], server: tuple[str, int]) -> int | None:
    """The uid owning the client end of the loopback connection ``client`` -> ``server``; None if not found."""
    for table, width in zip(_TABLES, (4, 16), strict=True):
        local = _hex_address(client[0], int(client[1]), width)
        remote = _hex_address(server[0], int(server[1]), width)
        if local is None or remote is None:
            continue
        try:
            text = table.read_text()
        except OSError:
            continue
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 7 and fields[1] == local and fields[2] == remote:
                try:
                    return int(fields[7])
                except ValueError:
                    return None
    return None

"""Who is on the other end of a loopback TCP connection: the uid that owns the client's socket (docs/security.md).

A dashboard on 127.0.0.1 without a token is reachable by every local user, since loopback TCP has no
permissions. Linux says who owns each socket in ``/proc/net/tcp`` and ``/proc/net/tcp6`` (the ``uid`` column):
both ends of a loopback connection are on this machine, so the client's socket, the line whose local address
is the request's client address and whose remote address is the server's, names the user who connected. The
dashboard serves a token-less loopback request only when that uid is its own (trackiod.dashboard.app).
Where those files do not exist (not Linux), the dashboard needs a token on loopback too.

The kernel is asked first through its socket-diagnostics netlink interface (sock_diag, what ``ss`` uses) for
the one socket with that address pair: an exact lookup of about 0.1 ms. Reading ``/proc/net/tcp`` walks the
kernel's whole TCP hash table (262,144 buckets on a 24 GiB machine): 14-22 ms per request, which the dashboard
paid on every request before, its event loop blocked meanwhile. The files are read only where netlink cannot be
used (a kernel without ``inet_diag``, a sandbox that forbids netlink sockets).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import sys
from pathlib import Path

_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
_NETLINK_SOCK_DIAG = 4  # linux/netlink.h
_SOCK_DIAG_BY_FAMILY = 20  # linux/sock_diag.h
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_NO_COOKIE = 0xFFFFFFFF  # INET_DIAG_NOCOOKIE: match the socket by its addresses alone
_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr
#: struct inet_diag_msg after the header: family, state, timer, retrans (4 bytes), the 48-byte sockid, then
#: expires, rqueue, wqueue, uid, inode.
_UID_OFFSET = _HEADER.size + 4 + 48 + 12


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
    try:
        return _diag_uid(client, server)
    except OSError:
        return _proc_uid(client, server)


def _packed(host: str) -> tuple[int, bytes]:
    """An address's family and its 16 bytes as struct inet_diag_sockid holds them (an IPv4 one zero-padded)."""
    ip = ipaddress.ip_address(host.strip("[]").split("%")[0])
    if ip.version == 4:
        return socket.AF_INET, ip.packed.ljust(16, b"\0")
    return socket.AF_INET6, ip.packed


def _diag_uid(client: tuple[str, int], server: tuple[str, int]) -> int | None:
    """sock_diag's exact lookup of the client's socket (struct inet_diag_req_v2, without NLM_F_DUMP).

    Raises:
        OSError: netlink or inet_diag cannot be used here (the caller reads /proc instead).
    """
    try:
        family, source = _packed(client[0])
        _, destination = _packed(server[0])
    except ValueError:
        return None
    sockid = (
        struct.pack("!HH", int(client[1]), int(server[1]))
        + source
        + destination
        + struct.pack("=III", 0, _NO_COOKIE, _NO_COOKIE)
    )
    request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid
    message = _HEADER.pack(_HEADER.size + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0) + request
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(2.0)
        sock.sendto(message, (0, 0))
        reply = sock.recv(8192)
    _, kind, _, _, _ = _HEADER.unpack_from(reply)
    if kind == _NLMSG_ERROR:
        code = -struct.unpack_from("=i", reply, _HEADER.size)[0]
        if code == errno.ENOENT:
            return None  # no such connection (it closed, or the addresses are not a connection's)
        raise OSError(code, "sock_diag refused the lookup")
    if len(reply) < _UID_OFFSET + 4:
        raise OSError(errno.EPROTO, "sock_diag answered too short a message")
    return int(struct.unpack_from("=I", reply, _UID_OFFSET)[0])


def _proc_uid(client: tuple[str, int], server: tuple[str, int]) -> int | None:
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

"""Who connected to the loopback dashboard (trackiod.dashboard.peer): the kernel's exact socket lookup.

Before, every token-less loopback request read /proc/net/tcp and tcp6, which walks the kernel's whole TCP hash
table: 14-22 ms per request on the 2-core test machine, with the server's event loop blocked meanwhile (a runs
page of 16 requests waited ~350 ms for it). Now sock_diag is asked for the one socket; the files are the
fallback where netlink cannot be used.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from trackiod.dashboard import peer


def _connection(family: int, host: str) -> Iterator[tuple[tuple[str, int], tuple[str, int]]]:
    with socket.socket(family) as server:
        server.bind((host, 0))
        server.listen()
        with socket.create_connection(server.getsockname()[:2]) as client:
            accepted, _ = server.accept()
            with accepted:
                yield client.getsockname()[:2], server.getsockname()[:2]


@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_the_owner_is_found_without_reading_proc(
    family: int, host: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if not peer.available():
        pytest.skip("not Linux: the dashboard takes a token on loopback instead")
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        pairs = _connection(family, host)
        client, server = next(pairs)
    except OSError as exc:
        pytest.skip(f"cannot listen on {host}: {exc}")
    try:
        from_proc = peer.peer_uid(client, server)
        assert from_proc == os.geteuid()
        # Without the /proc files the lookup must still find it: it is the kernel's exact lookup, not a scan.
        monkeypatch.setattr(peer, "_TABLES", (tmp_path / "no-tcp", tmp_path / "no-tcp6"))
        assert peer.peer_uid(client, server) == os.geteuid()
        assert peer.peer_uid((client[0], 1), server) is None, "no such connection: nobody"
    finally:
        pairs.close()


def test_files_are_read_where_netlink_cannot_be_used(monkeypatch: pytest.MonkeyPatch) -> None:
    if not peer.available():
        pytest.skip("not Linux")

    def refused(*args: object) -> None:
        raise PermissionError(1, "netlink sockets are forbidden here (a sandbox)")

    monkeypatch.setattr(peer, "_diag_uid", refused)
    pairs = _connection(socket.AF_INET, "127.0.0.1")
    client, server = next(pairs)
    try:
        assert peer.peer_uid(client, server) == os.geteuid()
    finally:
        pairs.close()

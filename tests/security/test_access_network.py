"""Promise: TCP requires CURVE keys (docs/security.md, docs/forwarding.md).

tests/daemon/test_forwarding.py covers a listener without keys or without authorised clients (refused at start), a
forwarder with an unknown key (refused by ZAP) and the kill -9 round trip. Here: what is left of the promise,
against a real head daemon listening on 127.0.0.1 -- a plaintext client gets nothing, a client that does not
know the head's key gets nothing, a forwarder without the head's key and a secret key readable by others are
refused at start. Raw pyzmq sockets play the clients, with an authorised CURVE client as the positive control.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import zmq

from tests.support.daemons import DaemonProcess, Daemons
from tests.support.nodes import env_for_node, free_port, trackiod_keys
from trackio_shim import protocol as P

ANSWER_WAIT_MS = 1500


@pytest.fixture
def head(
    env: dict[str, str], tmp_path: Path, daemons: Daemons
) -> tuple[DaemonProcess, int, bytes, tuple[bytes, bytes]]:
    """A head daemon listening with CURVE; yields it, its port, its public key and an authorised client pair."""
    port = free_port()
    head_env = {**env_for_node(env, tmp_path, "head"), "TRACKIOD_LISTEN": f"tcp://127.0.0.1:{port}"}
    client_public, client_secret = zmq.curve_keypair()
    head_key = trackiod_keys(head_env, "--authorize", client_public.decode())
    daemon = daemons(head_env, tmp_path / "head.log").start()
    return daemon, port, head_key.encode(), (client_public, client_secret)


def _ping_answered(port: int, **curve: Any) -> bool:
    """Whether a DEALER set up with ``curve`` options gets any answer to a PING from the head."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    for option, value in curve.items():
        setattr(sock, option, value)
    sid = os.urandom(P.SESSION_ID_BYTES)
    sock.setsockopt(zmq.ROUTING_ID, sid)  # the head answers a session at its routing id, as for a forwarder
    try:
        sock.connect(f"tcp://127.0.0.1:{port}")
        sock.send(P.pack([P.PING, sid, P.PROTOCOL_VERSION]))
        if not sock.poll(ANSWER_WAIT_MS):
            return False
        return P.decode_daemon(sock.recv())[0] == P.PONG
    finally:
        sock.close(linger=0)


def test_only_an_authorised_curve_client_that_knows_the_head_gets_answers(head: Any) -> None:
    daemon, port, head_key, (public, secret) = head
    assert not _ping_answered(port), "a plaintext client must get nothing"
    rogue_public, rogue_secret = zmq.curve_keypair()
    wrong_server, _ = zmq.curve_keypair()
    assert not _ping_answered(port, curve_publickey=public, curve_secretkey=secret, curve_serverkey=wrong_server), (
        "a client with the wrong head key must get nothing (it could be talking to an impostor)"
    )
    rogue = {"curve_publickey": rogue_public, "curve_secretkey": rogue_secret}
    assert not _ping_answered(port, curve_serverkey=head_key, **rogue), "an unauthorised client key gets nothing"
    # The positive control: the same exchange with an authorised key and the right head key is answered.
    assert _ping_answered(port, curve_publickey=public, curve_secretkey=secret, curve_serverkey=head_key)
    assert daemon.alive


def _start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackiod", "start", "--foreground"], env=env, capture_output=True, text=True, timeout=60
    )


def test_a_forwarder_without_the_heads_key_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    node = {**env_for_node(env, tmp_path, "node"), "TRACKIOD_FORWARD": f"tcp://127.0.0.1:{free_port()}"}
    trackiod_keys(node)
    result = _start(node)
    assert result.returncode == 1 and "trackiod keys --head=KEY" in result.stderr


def test_a_secret_key_readable_by_others_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    head_env = {**env_for_node(env, tmp_path, "head"), "TRACKIOD_LISTEN": f"tcp://127.0.0.1:{free_port()}"}
    public, _ = zmq.curve_keypair()
    trackiod_keys(head_env, "--authorize", public.decode())
    secret = Path(head_env["TRACKIOD_HOME"]) / "keys" / "node.secret"
    os.chmod(secret, 0o644)
    result = _start(head_env)
    assert result.returncode == 1 and str(secret) in result.stderr and "chmod 600" in result.stderr


def test_a_key_that_begins_with_a_dash_is_accepted_in_the_documented_form(env: dict[str, str], tmp_path: Path) -> None:
    """About one Z85 key in 85 begins with '-': `trackiod keys --head=KEY` takes it (a flaky test found this)."""
    key = next(k for k in (zmq.curve_keypair()[0] for _ in range(20_000)) if k.startswith(b"-"))
    node = env_for_node(env, tmp_path, "node")
    trackiod_keys(node, "--head", key.decode(), "--authorize", key.decode())
    keys_dir = Path(node["TRACKIOD_HOME"]) / "keys"
    assert (keys_dir / "head.public").read_bytes().strip() == key
    assert key in (keys_dir / "authorized").read_bytes().split()

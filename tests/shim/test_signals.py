"""An exception a signal handler raises inside log() leaves the session consistent (issue 18: 11, part 4).

Timeout helpers raise from a SIGALRM handler; Ctrl-C raises KeyboardInterrupt; either can land at any
bytecode of log(). A fast interval timer makes that happen thousands of times in a real training script; every
call that returned is stored, no step twice, and the daemon keeps acknowledging while it happens.
"""

from __future__ import annotations

import json

import pytest

from tests.support.daemons import DaemonProcess, wait_for
from tests.support.scripts import run_script
from tests.support.training import raw_points

#: Generous for a loaded 2-core machine; a stalled session needs more than 10 s (it waits for finish()).
ACK_WITHIN_S = 6.0

ALARM = """
import json, os, signal, time
import trackio_shim as wandb

class Timeout(Exception):
    pass

kind = os.environ["T_RAISE"]

armed = [False]  # the handler raises only while log() may be running, as a timeout helper around it would

def on_alarm(signum, frame):
    if armed[0]:
        armed[0] = False
        raise KeyboardInterrupt if kind == "KeyboardInterrupt" else Timeout()

run = wandb.init(project="rel", id=os.environ["T_RUN"])
client = run._client
signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
returned, raised = [], 0
step = 0
deadline = time.monotonic() + 1.5
while time.monotonic() < deadline:
    try:
        armed[0] = True
        run.log({"k0": step, "k1": step}, step=step)
        armed[0] = False
        returned.append(step)
    except (Timeout, KeyboardInterrupt):
        raised += 1
    step += 1
signal.setitimer(signal.ITIMER_REAL, 0, 0)
signal.signal(signal.SIGALRM, signal.SIG_DFL)
# Delivery must not have stalled: everything logged is acknowledged (the pump reads the ACKs), before finish().
waited = time.monotonic()
while client.acked < client.seq and time.monotonic() < waited + 30:
    time.sleep(0.01)
acked = client.acked >= client.seq
stats = client.stats()
wandb.finish()
print(json.dumps({"returned": returned, "attempted": step, "raised": raised, "acked": acked,
                  "ack_s": time.monotonic() - waited, "spooled": stats["spooled_frames"]}), flush=True)
"""


@pytest.mark.parametrize("exception", ["Timeout", "KeyboardInterrupt"])
def test_exception_raised_inside_log_by_a_signal_handler(
    daemon: DaemonProcess, env: dict[str, str], exception: str
) -> None:
    run_id = f"alarm-{exception}"
    result = run_script(ALARM, {**env, "T_RUN": run_id, "T_RAISE": exception}, timeout=90)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["raised"] > 10, f"the timer interrupted too few calls to mean anything: {report['raised']}"
    # Before the fix a frame lost its place in the buffer and delivery stalled until finish() spooled it all.
    assert report["acked"] and report["ack_s"] < ACK_WITHIN_S, f"delivery stalled: {report['ack_s']:.1f} s to ACK"
    assert report["spooled"] == 0
    returned = set(report["returned"])

    def stored() -> dict[str, list[int]]:
        points = raw_points(run_id) or {}
        return {key: sorted(int(s) for s in points[key][:, 0]) for key in points}

    wait_for(lambda: len(stored().get("k0", [])) >= len(returned), timeout=30, what="every returned call stored")
    for key, steps in stored().items():
        assert len(steps) == len(set(steps)), f"{key}: a step stored twice"
        assert returned <= set(steps), f"{key}: calls that returned are missing: {sorted(returned - set(steps))[:10]}"
        assert set(steps) <= set(range(report["attempted"])), f"{key}: a step nobody logged"

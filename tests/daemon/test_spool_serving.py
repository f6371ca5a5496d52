"""A restarted daemon serves at once whatever the spool holds (issue 16, part 4; issue 18, finding 12).

A real daemon starts on a home whose spool holds a dead trainer's large file; a real training script then
init()s and logs while that file is still being read in the background. Both runs end up stored exactly once.
Nothing here is timed: the spool is large enough that it is still pending when the live run is complete, and
the test checks that order of events (through ``trackiod status``), with deadline waits only.
"""

from __future__ import annotations

import numpy as np

from tests.support.daemons import DaemonProcess, wait_for
from tests.support.spool_files import spooled_run
from tests.support.training import PROJECT, assert_complete, raw_points, report_of, start_training

#: One-key frames in the dead trainer's spool: seconds of background reading on this machine.
SPOOLED_STEPS = 1_000_000


def test_init_and_logging_are_served_while_a_large_spool_is_read(
    stopped_daemon: DaemonProcess, env: dict[str, str]
) -> None:
    settings = stopped_daemon.settings()
    settings.ensure_dirs()  # private, as the daemon wants them
    spool = settings.spool_dir
    spooled_run(spool, PROJECT, "spooled", SPOOLED_STEPS, files=2)
    stopped_daemon.start()

    proc = start_training(env, "live", steps=300)
    report_of(proc)
    assert_complete("live", 300)
    status = stopped_daemon.status() or {}
    assert status.get("spool_files_queued", 0) >= 1, (
        "the live run was stored only after the spool was read: the daemon did not serve it at once"
    )

    wait_for(
        lambda: (stopped_daemon.status() or {}).get("spool_files_queued") == 0,
        timeout=240,
        what="the spool to be read",
    )
    points = raw_points("spooled")
    assert points is not None and sorted(points) == ["k0"]
    steps = np.sort(points["k0"][:, 0].astype(np.int64))
    assert steps.size == SPOOLED_STEPS, "every spooled point stored exactly once"
    assert np.array_equal(steps, np.arange(SPOOLED_STEPS))
    assert not list(spool.glob("*.spool"))

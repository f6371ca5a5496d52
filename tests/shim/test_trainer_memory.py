"""Issue 18, finding 13 (first half): a trainer logging through an outage stays near ``TRACKIOD_BUFFER_BYTES``.

Before the fix the buffer counted only the frames' bytes, not what each buffered frame costs in Python (a
bytes object and a list slot), so one-key frames logged flat out with the default 64 MiB buffer took the
trainer to 142 MiB before anything was spooled. A real training script, no daemon (autostart off, so every
frame waits in memory, then in the spool), its peak RSS (VmHWM) read by the script itself.
"""

from __future__ import annotations

import json

from tests.support.scripts import run_script

BUFFER = 64 * 1024 * 1024

SCRIPT = """
import json

def peak_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

import trackio_shim as wandb

run = wandb.init(project="memory", id="outage")
for warm in range(1000):
    run.log({"loss": 1.0})
base = peak_mib()
for step in range(1_500_000):  # about 140 MiB of one-key frames: well past the buffer, so it spools
    run.log({"loss": float(step)})
from trackio_shim.session.client import current_client

stats = current_client().stats()
print(json.dumps({"base": base, "peak": peak_mib(), "spooled": stats.get("spooled_frames", 0)}), flush=True)
run.finish()
"""


def test_a_trainer_through_an_outage_stays_near_its_buffer(env: dict[str, str]) -> None:
    result = run_script(SCRIPT, env, timeout=300)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["spooled"] > 0, f"the outage never reached the spool: {figures}"
    grown = figures["peak"] - figures["base"]
    # The buffer, plus what the spool writer and the interpreter need besides (a few MiB): never the 2x of before.
    assert grown <= BUFFER / 2**20 * 1.25, f"the trainer grew by {grown:.0f} MiB with a 64 MiB buffer: {figures}"

"""``import trackio_shim`` loads only the standard library, zmq and msgpack (checked in a fresh interpreter).

numpy and the rest are loaded only when the caller brings them: logging a numpy scalar works without the shim
ever importing numpy itself.
"""

from __future__ import annotations

import json
from typing import Any

from tests.support.daemons import DaemonProcess
from tests.support.scripts import run_script

# Never at import, nor for init/log/finish with plain Python values.
HEAVY = ("numpy", "torch", "apsw", "psutil", "trackiod", "pandas")

_PROBE = """
import json, sys
before = set(sys.modules)
import trackio_shim
imported = set(sys.modules) - before
third_party = sorted(
    {m.split(".")[0] for m in imported}
    - set(sys.stdlib_module_names)
    - {"trackio_shim", "zmq", "msgpack", "cython_runtime"}
)
third_party = [m for m in third_party if not m.startswith("_cython_")]
print(json.dumps({"third_party": third_party, "loaded": sorted(sys.modules)}))
"""


def _report(stdout: str) -> dict[str, Any]:
    return json.loads(stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_import_loads_only_stdlib_zmq_and_msgpack(env: dict[str, str]) -> None:
    report = _report(run_script(_PROBE, env).stdout)
    assert report["third_party"] == []
    loaded = {m.split(".")[0] for m in report["loaded"]}
    assert {"trackio_shim", "zmq", "msgpack"} <= loaded
    assert [m for m in HEAVY if m in loaded] == []


def test_numpy_is_imported_only_by_the_caller(daemon: DaemonProcess, env: dict[str, str]) -> None:
    script = """
    import json, sys
    import trackio_shim as wandb

    def heavy():
        return sorted(m for m in {n.split(".")[0] for n in sys.modules} if m in HEAVY)

    run = wandb.init(project="light", id="light1", config={"lr": 0.1})
    run.log({"x": 1.0, "nested": {"y": 2}, "s": "text"})
    run.summary["best"] = 1
    wandb.config.update({"epochs": 2})
    after_plain = heavy()
    import numpy as np
    run.log({"x": np.float32(0.5), "z": np.array(3)})
    run.finish()
    print(json.dumps({"after_plain": after_plain, "at_end": heavy()}))
    """.replace("HEAVY", repr(HEAVY))
    report = _report(run_script(script, env).stdout)
    assert report["after_plain"] == []
    assert report["at_end"] == ["numpy"]  # the caller's own import, nothing else

    from trackio_shim import Api

    rows = list(Api().run("light/light1").scan_history())
    assert [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows] == [
        {"x": 1, "nested/y": 2, "s": "text"},
        {"x": 0.5, "z": 3},
    ]

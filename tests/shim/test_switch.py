"""The switch (trackio_shim.switch): ``import wandb`` / ``import trackio`` meaning trackio_shim, only when asked.

Each case runs a fresh interpreter, since the switch changes the import system of the process it runs in. The
shared environment has the real wandb 0.31 and trackio 0.43 installed; the cases marked "not installed" run
in a virtual environment without them (tests/support/switch_env.py), as most users' environments are.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.support.daemons import daemons_for
from tests.support.scripts import run_script
from tests.support.switch_env import venv_without

# The module paths and names the integrations import (read from their installed sources: transformers'
# WandbCallback and TrackioCallback, Lightning's WandbLogger, accelerate's WandBTracker, torch-rechub's
# WandbLogger), checked after the switch is on.
_PATHS = """
import importlib.metadata, importlib.util
import wandb, trackio
from wandb.sdk.lib import RunDisabled
from wandb.sdk.lib.config_util import ConfigError
from wandb.wandb_run import Run
from wandb.sdk.wandb_run import Run as SdkRun
import wandb.errors, wandb.util, wandb.sdk
import trackio_shim
from trackio_shim.sdk.wandb_run import DisabledRun, Run as ShimRun

assert wandb.__name__ == "trackio_shim.switch.wandb", wandb
assert trackio.__name__ == "trackio_shim.switch.trackio", trackio
assert RunDisabled is DisabledRun and Run is ShimRun and SdkRun is ShimRun
assert ConfigError is trackio_shim.ConfigError
assert issubclass(wandb.errors.CommError, wandb.errors.Error) and wandb.errors.UsageError is trackio_shim.UsageError
assert len(wandb.util.generate_id()) == 8
for name in ("init", "log", "finish", "define_metric", "watch", "save", "require", "setup", "termlog", "termwarn",
             "termerror", "mark_preempting", "Api", "Artifact", "Image", "Table", "Histogram", "Html", "Settings",
             "login", "alert", "log_artifact", "use_artifact", "_attach", "teardown"):
    assert callable(getattr(wandb, name)), name
assert wandb.run is None and dict(wandb.config) == {} and hasattr(wandb, "summary")
assert wandb.require("service") is None and wandb.setup() is None
for name in ("init", "log", "finish", "config", "Image", "Table", "Api", "freeze", "sync"):
    assert hasattr(trackio, name), name
assert trackio.context_vars.current_project.get() is None and trackio.context_vars.current_space_id.get() is None
assert importlib.util.find_spec("wandb") is not None and importlib.util.find_spec("trackio") is not None
assert importlib.metadata.version("wandb") == "0.31.0+trackio.shim", importlib.metadata.version("wandb")
assert importlib.metadata.version("trackio") == "0.43.0+trackio.shim"
try:
    import wandb.no_such_module
except ModuleNotFoundError as exc:
    assert "wandb.no_such_module" in str(exc)
else:
    raise AssertionError("an unknown wandb submodule imported")
# What Lightning checks before it uses wandb (accelerate's and transformers' checks run in
# tests/integrations/test_real_clients.py, with the frameworks themselves).
from lightning_utilities.core.imports import RequirementCache
assert RequirementCache("wandb>=0.12.10")
print("PATHS OK")
"""


def test_install_gives_the_paths_integrations_import_and_says_once_what_it_hides(env: dict[str, str]) -> None:
    code = (
        "import warnings\nwarnings.simplefilter('always')\nimport trackio_shim\ntrackio_shim.install()\n"
        + _PATHS
        + "import wandb, trackio\n"  # a second import warns no more
    )
    done = run_script(code, env, timeout=120)
    assert "PATHS OK" in done.stdout
    hidden = [line for line in done.stderr.splitlines() if "is not used in this process" in line]
    assert len(hidden) == 2, done.stderr  # one each for the real wandb and the real trackio installed here
    assert "site-packages/wandb" in hidden[0] and "<string>:" in hidden[0]  # at the user's import line


def test_without_the_switch_nothing_is_replaced(env: dict[str, str]) -> None:
    code = """
        import importlib.metadata, importlib.util, sys
        import trackio_shim, trackio_shim.integrations.adapter
        from trackio_shim.switch import ShimFinder, installed
        assert installed() == frozenset() and not any(isinstance(f, ShimFinder) for f in sys.meta_path)
        assert "site-packages/wandb" in importlib.util.find_spec("wandb").origin
        assert importlib.metadata.version("wandb") == "0.31.0"
        print("UNTOUCHED")
    """
    assert "UNTOUCHED" in run_script(code, env).stdout


def test_install_refuses_a_real_wandb_already_imported_and_uninstall_restores(env: dict[str, str]) -> None:
    code = """
        import importlib.util, os, sys, types
        import trackio_shim
        from trackio_shim.errors import UsageError
        sys.modules["wandb"] = types.ModuleType("wandb")  # stands in for a real wandb imported earlier
        try:
            trackio_shim.install("wandb")
        except UsageError as exc:
            assert "before the switch" in str(exc) and "TRACKIO_SHIM_AS" in str(exc), exc
        else:
            raise AssertionError("install() replaced a wandb already in use")
        del sys.modules["wandb"]
        try:
            trackio_shim.install("wandb,mlflow")
        except UsageError as exc:
            assert "mlflow cannot be switched" in str(exc), exc
        assert trackio_shim.install("wandb") == {"wandb"} and os.environ["TRACKIO_SHIM_AS"] == "wandb"
        import wandb
        assert wandb.__name__ == "trackio_shim.switch.wandb"
        trackio_shim.uninstall()
        assert "TRACKIO_SHIM_AS" not in os.environ and "wandb" not in sys.modules
        assert "site-packages/wandb" in importlib.util.find_spec("wandb").origin
        print("REFUSED AND RESTORED")
    """
    assert "REFUSED AND RESTORED" in run_script(code, env).stdout


def test_the_launcher_runs_a_script_or_a_module_under_the_switch(env: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "user_script.py"
    script.write_text(
        "import sys, os, wandb\nprint('NAME', __name__, wandb.__name__, sys.argv[1:], os.environ['TRACKIO_SHIM_AS'])\n"
    )
    run = [sys.executable, "-W", "ignore", "-m", "trackio_shim"]
    done = subprocess.run([*run, str(script), "--lr", "0.1"], env=env, capture_output=True, text=True, timeout=60)
    assert "NAME __main__ trackio_shim.switch.wandb ['--lr', '0.1'] trackio,wandb" in done.stdout, done.stderr
    done = subprocess.run(
        [*run, "--as", "wandb", "-m", "user_script", "x"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert "NAME __main__ trackio_shim.switch.wandb ['x'] wandb" in done.stdout, done.stderr
    bad = subprocess.run([*run, "--as", "comet", str(script)], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "comet cannot be switched" in bad.stderr


@pytest.fixture(scope="module")
def python_without_wandb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return venv_without(tmp_path_factory.mktemp("no-wandb"))


def test_not_installed_the_env_var_switches_through_the_pth(env: dict[str, str], python_without_wandb: Path) -> None:
    def run(code: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(python_without_wandb), "-c", code], env={**env, **extra}, capture_output=True, text=True, timeout=120
        )

    off = run("import wandb")
    assert off.returncode != 0 and "No module named 'wandb'" in off.stderr  # no request, no wandb
    on = run("import warnings; warnings.simplefilter('error')\n" + _PATHS, TRACKIO_SHIM_AS="wandb,trackio")
    assert on.returncode == 0 and "PATHS OK" in on.stdout, on.stderr  # and no warning: nothing is hidden
    only = run(
        "import wandb\ntry:\n    import trackio\nexcept ImportError:\n    print('NO TRACKIO')", TRACKIO_SHIM_AS="wandb"
    )
    assert "NO TRACKIO" in only.stdout, only.stderr
    bad = run("import sys; print('STARTED')", TRACKIO_SHIM_AS="comet")
    assert "STARTED" in bad.stdout and "comet cannot be switched" in bad.stderr


def test_an_autostarted_daemon_does_not_inherit_the_switch(env: dict[str, str]) -> None:
    """The daemon's wandb mirror drives the real wandb: TRACKIO_SHIM_AS stays with the training process."""
    home = Path(env["TRACKIOD_HOME"])
    # install() exports TRACKIO_SHIM_AS for this process's children; the daemon it autostarts is not one of them.
    code = (
        "import trackio_shim\ntrackio_shim.install('wandb')\nimport wandb\nwandb.init(project='auto')\nwandb.finish()\n"
    )
    try:
        run_script(code, {**env, "TRACKIOD_AUTOSTART": "1"}, timeout=120)
        (daemon,) = daemons_for(home)
        environ = daemon.environ()
        assert environ["TRACKIOD_HOME"] == str(home) and "TRACKIO_SHIM_AS" not in environ
    finally:
        for proc in daemons_for(home):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except psutil.TimeoutExpired:
                proc.kill()

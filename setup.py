"""Only a build hook; everything else is in pyproject.toml.

The wheel carries ``trackio_shim_switch.pth`` at the top of site-packages: at interpreter start it turns the
switch on (``import wandb`` means trackio_shim) when, and only when, ``TRACKIO_SHIM_AS`` is set (shim/
trackio_shim/switch/__init__.py). setuptools puts package files only inside packages, so build_py copies it.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = Path("shim") / "trackio_shim_switch.pth"


class BuildWithSwitch(build_py):  # type: ignore[misc]
    def run(self) -> None:
        super().run()
        self.copy_file(str(PTH), str(Path(self.build_lib) / PTH.name))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH.name)]


setup(cmdclass={"build_py": BuildWithSwitch})

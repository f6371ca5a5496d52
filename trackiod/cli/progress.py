"""A small progress bar for long CLI work (copies, imports, exports, syncs).

On a terminal it redraws one line at most ten times a second; elsewhere (a pipe, a log file, CI) it prints
nothing until the end, then one summary line, so logs are not flooded. Use it as a context manager::

    with Progress("copying", total=size, unit="B") as bar:
        for chunk in chunks:
            bar.update(len(chunk))
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

from trackiod.cli.format import human_bytes

_WIDTH = 28
_REDRAW_S = 0.1


def _amount(value: float, unit: str) -> str:
    if unit == "B":
        return human_bytes(value)
    return f"{value:,.0f}{' ' + unit if unit else ''}"


class Progress:
    """One progress bar; ``total`` None draws a counter without a bar."""

    def __init__(
        self, label: str, total: float | None = None, unit: str = "", stream: TextIO | None = None, quiet: bool = False
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0.0
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._started = time.monotonic()
        self._drawn = 0.0

    def update(self, amount: float = 1) -> None:
        """Add ``amount`` to the work done; redraws when on a terminal and enough time has passed."""
        self.done += amount
        now = time.monotonic()
        if self._tty and not self.quiet and now - self._drawn >= _REDRAW_S:
            self._drawn = now
            self.stream.write("\r" + self.line() + "\x1b[K")
            self.stream.flush()

    def line(self) -> str:
        """The bar as text: label, bar and percentage (when the total is known), amount, rate."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = f"{_amount(self.done / elapsed, self.unit)}/s"
        if self.total:
            share = min(self.done / self.total, 1.0)
            filled = int(share * _WIDTH)
            bar = "#" * filled + "-" * (_WIDTH - filled)
            amount = f"{_amount(self.done, self.unit)}/{_amount(self.total, self.unit)}"
            return f"{self.label} [{bar}] {share:4.0%} {amount} {rate}"
        return f"{self.label} {_amount(self.done, self.unit)} {rate}"

    def close(self, ok: bool = True) -> None:
        """Draw the final state on its own line."""
        if self.quiet:
            return
        end = "" if ok else " (interrupted)"
        self.stream.write(("\r" if self._tty else "") + self.line() + end + ("\x1b[K" if self._tty else "") + "\n")
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(ok=exc_type is None)

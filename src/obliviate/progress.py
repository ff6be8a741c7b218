"""Progress reports that are silent unless asked for, so the library prints nothing by default.

On a terminal: a rich bar that moves with every step (a mini-batch, a job). Anywhere else (a
log file, CI, a pipe): plain lines on stderr every ``OBLIVIATE_PROGRESS_SECONDS`` seconds
(default 30) and one at the end, so a long run in a log is never silent for long.
"""

from __future__ import annotations

import os
import sys
import time

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress


class Progress:
    """A bar (terminal), periodic log lines (no terminal), or nothing (``enabled`` false)."""

    def __init__(self, description: str, total: int, enabled: bool = False, stream=None):
        self.enabled = enabled
        self.description = description
        self.total = total
        self.done = 0
        self._stream = stream
        self._info: dict = {}
        self._bar = None
        self._task = None
        self._start = self._last = 0.0
        self._every = float(os.environ.get("OBLIVIATE_PROGRESS_SECONDS", "30"))

    def __enter__(self) -> Progress:
        self._start = self._last = time.monotonic()
        stream = self._stream or sys.stderr
        if self.enabled and stream.isatty():
            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"),
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total, info="")
        return self

    def advance(self, steps: int = 1, **info) -> None:
        """``steps`` more done; ``info`` (a loss, say) is shown beside the count until replaced."""
        self.done += steps
        self._info.update(info)
        if self._bar is not None:
            self._bar.update(self._task, advance=steps, info=self._text())
        elif self.enabled and time.monotonic() - self._last >= self._every:
            self._log()

    def note(self, **info) -> None:
        """Show ``info`` without counting a step (an epoch's loss once the epoch ends)."""
        self.advance(0, **info)

    def _text(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self._info.items())

    def _log(self) -> None:
        self._last = time.monotonic()
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        line = f"{self.description}: {self.done}/{self.total}{share}, {self._last - self._start:.0f}s {self._text()}"
        print(line.rstrip(), file=self._stream or sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
        elif self.enabled and exc[0] is None:
            self._log()

"""Progress bars (rich) that are silent unless asked for, so the library prints nothing by default."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress


class Progress:
    """A single rich progress bar, or a no-op when ``enabled`` is false."""

    def __init__(self, description: str, total: int, enabled: bool = False):
        self.enabled = enabled
        self.description = description
        self._bar = None
        self._task = None
        self.total = total

    def __enter__(self) -> Progress:
        if self.enabled:
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

    def advance(self, **info) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, info=" ".join(f"{k}={v}" for k, v in info.items()))

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

"""Atomic file writes: a temporary file in the same folder, fsynced, then renamed into place.

Temporary files are made private by ``mkstemp`` (mode 0600); before the rename they get the
mode an ordinary ``open`` would have given them (0666 less the user's umask), so teammates
can read models and reports exactly as they can read any other file the user writes.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path


def file_mode() -> int:
    """The mode a new file gets under the current umask (read without changing it where possible)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A temporary sibling of ``path`` that is removed unless the caller renamed it away."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
    finally:
        tmp_path.unlink(missing_ok=True)


def _seal(tmp: Path) -> None:
    os.chmod(tmp, file_mode())
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())


def _sync_dir(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` only if it succeeded.

    A crash leaves either the old file or the new one, never a partial file.
    """
    return atomic_write_many({Path(path): write})[0]


def atomic_write_many(writes: dict[Path, Callable[[Path], None]]) -> list[Path]:
    """Write every file to a temporary sibling first, then rename them all, in order.

    Nothing is renamed unless every write succeeded, so a failing writer leaves all targets
    as they were. (Two renames are not one atomic step: a crash between them leaves a new
    first file beside an old second one; callers that pair files check them against each
    other on reading, as model weights and their card do by hash.)
    """
    paths = [Path(p) for p in writes]
    with ExitStack() as stack:
        tmps = [stack.enter_context(staged(p)) for p in paths]
        for tmp, write in zip(tmps, writes.values(), strict=True):
            write(tmp)
            _seal(tmp)
        for tmp, path in zip(tmps, paths, strict=True):
            os.replace(tmp, path)
        for folder in {p.parent for p in paths}:
            _sync_dir(folder)
    return paths


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


@contextmanager
def locked(path: str | Path, shared: bool = False) -> Iterator[None]:
    """An ``flock`` on ``.<name>.lock`` beside ``path``: writers of a file group hold it
    exclusively, readers shared, so nobody sees one writer's first file with another's second."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, file_mode())
    except OSError:
        if not shared:
            raise
        yield  # a reader in a read-only folder reads without the lock
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

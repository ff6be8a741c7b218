"""Running the ``obliviate`` command in-process, as a user would from a shell."""

from __future__ import annotations

import sys


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``obliviate ARGS`` (arguments may be paths or numbers)."""
    from obliviate.cli import main

    monkeypatch.setattr(sys, "argv", ["obliviate", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err

"""The package's layering: low-level modules do not pull in the layers above them."""

from __future__ import annotations

import subprocess
import sys


def _loaded_after(statement: str, prefix: str) -> list[str]:
    code = f"import sys; {statement}; print(sorted(m for m in sys.modules if m.startswith({prefix!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return eval(out.stdout)


def test_evaluation_does_not_import_methods():
    assert _loaded_after("import obliviate.evaluation", "obliviate.methods") == []


def test_records_are_the_public_report_and_log():
    import obliviate
    from obliviate.evaluation import evaluate  # noqa: F401
    from obliviate.methods import RunLog
    from obliviate.records import Report

    assert obliviate.Report is Report and obliviate.RunLog is RunLog

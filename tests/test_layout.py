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


def test_sisa_imports_alone_and_registers_method_and_architecture():
    loaded = _loaded_after("from obliviate.methods.sisa import SISAEnsemble, train_sisa", "obliviate.methods.sisa")
    assert loaded == ["obliviate.methods.sisa"]
    from obliviate.methods import REGISTRY
    from obliviate.methods.sisa import Sisa, SISAEnsemble
    from obliviate.models import ARCHITECTURES

    assert REGISTRY["sisa"] is Sisa and ARCHITECTURES["sisa"] is SISAEnsemble

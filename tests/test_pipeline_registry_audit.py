"""Model registry (versions, serving pointer, corrupt files) and the hash-chained audit log."""

from __future__ import annotations

import json

import pytest
import torch
from pipeline_helpers import tiny_model

from obliviate.pipeline import AuditLog, ModelRegistry, RegistryError


def test_versions_and_serving_pointer(tmp_path):
    reg = ModelRegistry(tmp_path)
    assert reg.serving() is None and reg.next_version() == "v0001"
    v1 = reg.write(tiny_model(), {"parent": None, "method": "train"})
    assert reg.serving() is None, "writing a version must not make it serve"
    reg.promote(v1)
    model = tiny_model()
    with torch.no_grad():
        model.head.weight.add_(1.0)
    v2 = reg.write(model, {"parent": v1, "method": "finetune", "metrics": {"forget_acc": 1.0}})
    assert (v1, v2) == ("v0001", "v0002") and reg.serving() == v1
    reg.promote(v2)
    version, loaded, card = reg.load_serving()
    assert version == v2 and card["parent"] == v1 and card["architecture"]["architecture"] == "mlp"
    assert torch.equal(loaded.head.weight, model.head.weight)
    assert reg.history() == [v1, v2]
    with pytest.raises(RegistryError, match="promoted"):
        reg.discard(v1)
    v3 = reg.write(tiny_model(), {"parent": v2})
    reg.discard(v3)
    assert reg.versions() == [v1, v2]


def test_corrupt_model_file_names_the_version(tmp_path):
    reg = ModelRegistry(tmp_path)
    v1 = reg.write(tiny_model(), {})
    reg.promote(v1)
    v2 = reg.write(tiny_model(), {})
    path = reg.path(v2)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match=r"model version v0002 cannot be loaded.*sha256"):
        reg.load(v2)
    with pytest.raises(RegistryError, match="v0002"):
        reg.promote(v2)
    assert reg.serving() == v1, "a corrupt version must never be promoted"
    problems = reg.check()
    assert problems[v1] is None and "v0002" in problems[v2]
    path.write_bytes(b"not a safetensors file")
    card = json.loads(path.with_suffix(".json").read_text())
    card.pop("sha256")
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(RegistryError, match="v0002 cannot be loaded.*cannot load weights"):
        reg.load(v2)
    path.with_suffix(".json").write_text("{broken")
    with pytest.raises(RegistryError, match="v0002.*corrupt"):
        reg.card(v2)


def _log(tmp_path, n=5) -> AuditLog:
    log = AuditLog(tmp_path / "audit")
    for i in range(n):
        log.append({"kind": "batch", "batch_id": f"b{i}", "outcome": "promoted", "metrics": {"forget_acc": 10.0 + i}})
    return log


def test_audit_chain_intact_and_records_written(tmp_path):
    log = _log(tmp_path)
    result = log.verify()
    assert result.ok and result.entries == 5
    assert log.record("b3")["record"]["metrics"]["forget_acc"] == 13.0
    assert (log.records / "b3.json").exists()
    assert "forget_acc" in (log.records / "b3.html").read_text()
    assert log.has("b4") and not log.has("b9")


@pytest.mark.parametrize(
    ("tamper", "broken"),
    [
        ("edit_metric", 2),
        ("edit_and_rehash", 3),
        ("delete", 2),
        ("swap", 1),
        ("garbage", 4),
    ],
)
def test_audit_verify_reports_first_broken_entry(tmp_path, tamper, broken):
    log = _log(tmp_path)
    lines = log.log_path.read_text().splitlines()
    if tamper == "edit_metric":
        lines[2] = lines[2].replace('"forget_acc":12.0', '"forget_acc":0.0')
    elif tamper == "edit_and_rehash":
        # A careful forger recomputes the entry's own hash: the next entry's link still breaks.
        from obliviate.pipeline.audit import canonical, sha256_text

        entry = json.loads(lines[2])
        entry["record"]["metrics"]["forget_acc"] = 0.0
        entry["hash"] = sha256_text(canonical({k: v for k, v in entry.items() if k != "hash"}))
        lines[2] = canonical(entry)
    elif tamper == "delete":
        del lines[2]
    elif tamper == "swap":
        lines[1], lines[2] = lines[2], lines[1]
    else:
        lines[4] = lines[4][:-10]
    log.log_path.write_text("\n".join(lines) + "\n")
    result = log.verify()
    assert not result.ok and result.broken_at == broken, result
    assert str(broken) in result.problem

"""The runner's cache keys carry the code version: results made by other code are never reused."""

from __future__ import annotations

from obliviate.runner import cache, jobs
from obliviate.runner.jobs import Job
from obliviate.runner.suite import Suite


def test_code_version_changes_every_key(monkeypatch, tmp_path):
    suite = Suite(scenarios=[{"name": "c3", "spec": {"classes": [3]}}], methods=["finetune"])
    job = Job(suite, str(tmp_path), 0, "c3", "finetune")
    store = cache.ModelCache(tmp_path)
    before = job.key, store.path("original", {"seed": 0})
    assert cache.code_version().count("+") == 1 and job.key == Job(suite, str(tmp_path), 0, "c3", "finetune").key
    monkeypatch.setattr(cache, "code_version", lambda: "0.0+edited")
    monkeypatch.setattr(jobs, "code_version", lambda: "0.0+edited")
    after = job.key, store.path("original", {"seed": 0})
    assert before[0] != after[0] and before[1] != after[1]


def test_source_hash_follows_the_file(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "hashme_mod.py").write_text("def f():\n    return 1\n")
    import hashme_mod

    first = cache.source_hash(hashme_mod.f)
    (tmp_path / "hashme_mod.py").write_text("def f():\n    return 2\n")
    assert cache.source_hash(hashme_mod.f) != first and cache.source_hash(len) == "unknown"

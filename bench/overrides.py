"""``--set METHOD.KEY=VALUE`` options shared by the benchmark scripts."""

from __future__ import annotations

import json


def method_overrides(items: list[str]) -> dict[str, dict]:
    """Config overrides per method from ``METHOD.KEY=VALUE`` strings (values read as JSON)."""
    overrides: dict[str, dict] = {}
    for item in items:
        target, value = item.split("=", 1)
        method, key = target.split(".", 1)
        overrides.setdefault(method, {})[key] = json.loads(value)
    return overrides

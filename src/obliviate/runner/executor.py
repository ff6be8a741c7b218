"""Where independent jobs run: in this process one after another, or as Ray tasks.

Both executors call the same module-level job function on the same inputs with the same
number of torch threads, so they give identical numbers; only wall times differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from obliviate.extras import need
from obliviate.plugins import load_plugins, named_plugins

JOB_THREADS = 1
"""Torch threads per job, fixed so a result never depends on where the job ran."""


def _with_threads(fn: Callable[[Any], Any], item: Any) -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(JOB_THREADS)
    try:
        return fn(item)
    finally:
        torch.set_num_threads(before)


def _in_worker(fn: Callable[[Any], Any], item: Any, plugins: Sequence[str]) -> Any:
    """A job in a Ray worker: the driver's plugins (and installed ones) are loaded first, so user
    methods, metrics and models are known there as well."""
    load_plugins(plugins)
    return _with_threads(fn, item)


class SerialExecutor:
    """Runs jobs in order in this process."""

    name = "serial"

    def map(
        self, fn: Callable[[Any], Any], items: Sequence[Any], on_result: Callable[[int, Any], None] | None = None
    ) -> list[Any]:
        results = []
        for i, item in enumerate(items):
            results.append(_with_threads(fn, item))
            if on_result is not None:
                on_result(i, results[-1])
        return results


class RayExecutor:
    """Runs jobs as Ray tasks: on a local Ray started here, or on the cluster at ``address``.

    ``on_result`` is called in the driver as each job finishes, so results can be saved
    incrementally in whatever order the cluster completes them. ``plugins`` (default: those
    loaded by name in the driver) are imported in each worker before its job runs.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, plugins: Sequence[str] | None = None):
        ray = need("ray", "ray")
        self._ray = ray
        self.plugins = list(named_plugins() if plugins is None else plugins)
        if not ray.is_initialized():
            if address:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)

    def map(
        self, fn: Callable[[Any], Any], items: Sequence[Any], on_result: Callable[[int, Any], None] | None = None
    ) -> list[Any]:
        ray = self._ray
        remote = ray.remote(num_cpus=JOB_THREADS)(_in_worker)
        fn_ref = ray.put(fn)
        pending = {remote.remote(fn_ref, item, self.plugins): i for i, item in enumerate(items)}
        results: list[Any] = [None] * len(items)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(done[0])
            results[i] = ray.get(done[0])
            if on_result is not None:
                on_result(i, results[i])
        return results


def make_executor(name: str = "serial", address: str | None = None, num_cpus: int | None = None):
    """``serial`` (default) or ``ray``; ``address`` points Ray at an existing cluster."""
    if name == "serial":
        if address:
            raise ValueError("--ray-address needs --executor ray")
        return SerialExecutor()
    if name == "ray":
        return RayExecutor(address, num_cpus)
    raise ValueError(f"unknown executor {name!r}; choose serial or ray")

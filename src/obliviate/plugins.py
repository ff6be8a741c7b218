"""User code that registers models, methods and metrics, loaded by name or through entry points.

A plugin is a module that, on import, calls ``register_architecture``, ``@register`` (methods) or
``@metric``. Two ways in: ``obliviate --plugin my_pkg.unlearning ...`` (repeatable; in Python,
``load_plugins(["my_pkg.unlearning"])``), and the entry-point group ``obliviate.plugins`` of an
installed package::

    [project.entry-points."obliviate.plugins"]
    my_pkg = "my_pkg.unlearning"            # a module: importing it registers

An entry point may also name a callable (``"my_pkg.unlearning:setup"``), which is called once.
Entry points load when the command line starts, in every runner worker, and on a lookup of a
method or architecture name that is not registered. Plugins named with ``--plugin`` are
remembered, so the Ray executor imports them in its workers too (they must be importable
there: installed, or on ``PYTHONPATH``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "obliviate.plugins"

_named: list[str] = []
_entry_points_loaded: set[str] = set()


class PluginError(ValueError):
    """A plugin that cannot be imported, or fails while registering."""


def load_plugins(modules: Iterable[str] = ()) -> None:
    """Import each module in ``modules`` (once) and every entry point of the ``obliviate.plugins``
    group not loaded yet."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # user code: any failure is reported as one line naming the plugin
            raise PluginError(f"cannot load plugin {name!r}: {type(exc).__name__}: {exc}") from None
        if name not in _named:
            _named.append(name)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.value in _entry_points_loaded:
            continue
        try:
            target = ep.load()
            if callable(target):
                target()
        except Exception as exc:
            raise PluginError(f"cannot load plugin {ep.name!r} ({ep.value}): {type(exc).__name__}: {exc}") from None
        _entry_points_loaded.add(ep.value)


def named_plugins() -> list[str]:
    """The plugin modules loaded by name in this process, in order (for workers to load too)."""
    return list(_named)

#!/usr/bin/env bash
# Size of a fresh virtualenv with `pip install .` (the core) and with every extra.
# torch==2.13.0 (the CPU build) goes in first, as in the Makefile.
#   bash bench/install_size.sh [WORKDIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
for flavour in core all; do
    venv="$work/$flavour"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q torch==2.13.0
    if [ "$flavour" = core ]; then
        "$venv/bin/pip" install -q "$repo"
    else
        "$venv/bin/pip" install -q "$repo[all]"
    fi
    "$venv/bin/pip" cache purge -q >/dev/null 2>&1 || true
    echo "$flavour: $(du -sh "$venv" | cut -f1)  ($("$venv/bin/pip" list 2>/dev/null | tail -n +3 | wc -l) packages)"
done

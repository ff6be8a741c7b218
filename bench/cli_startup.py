"""How long ``obliviate --help`` takes to start: the median of 5 fresh interpreter runs.

    PYTHONPATH=src python bench/cli_startup.py

The target is under 1.5 s: the CLI imports torch and the library only inside commands.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 5


def main() -> None:
    command = [sys.executable, "-c", "from obliviate.cli import main; main()", "--help"]
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    torch_start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    torch_seconds = time.perf_counter() - torch_start
    print(
        f"obliviate --help: median {statistics.median(times):.2f}s of {RUNS} ({', '.join(f'{t:.2f}' for t in times)})"
    )
    print(f"for scale, 'import torch' alone: {torch_seconds:.2f}s")


if __name__ == "__main__":
    main()

"""How long `leadflow --help` takes, as a person sees it (fresh interpreter each run).

    .venv/bin/python cli/bench_help.py [--runs 10]

The goal is under 0.5 s; the parsers import nothing heavy (cli/tests/test_lazy_help.py checks that).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    exe = Path(sys.executable).with_name("leadflow")
    cmd = [str(exe), "--help"] if exe.exists() else [sys.executable, "-m", "leadflow_cli", "--help"]
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    print(
        f"leadflow --help: median {statistics.median(times) * 1000:.0f} ms, "
        f"max {max(times) * 1000:.0f} ms over {args.runs} runs (goal < 500 ms)"
    )


if __name__ == "__main__":
    main()

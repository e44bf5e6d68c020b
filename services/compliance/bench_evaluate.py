"""Evaluate latency p50/p99 and evaluations/s over gRPC against a running compliance server.

uv run python services/compliance/bench_evaluate.py --addr 127.0.0.1:50051 -n 2000 -c 8
"""

from __future__ import annotations

import argparse
import json

from leadflow_compliance.bench import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--addr", default="127.0.0.1:50051")
    parser.add_argument("-n", "--total", type=int, default=2000)
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    args = parser.parse_args()
    print(json.dumps(run(args.addr, args.total, args.concurrency)))


if __name__ == "__main__":
    main()

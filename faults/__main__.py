"""`python -m faults` (`make faults`): every scenario under steady load, one report line each.

python -m faults                                  # every scenario
python -m faults --only baseline,sigkill_dial_worker --rate 2 --seconds 20
python -m faults --json var/faults.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
from pathlib import Path

from faults.run import Report, run_scenario
from faults.scenarios import SCENARIOS
from faults.stack import private_stack

COLUMNS = (
    ("scenario", 30),
    ("in", 4),
    ("stored", 6),
    ("dialed", 6),
    ("calls/lead", 10),
    ("called 2x", 9),
    ("crm/lead", 8),
    ("crm 2x", 6),
    ("recover dial s", 14),
    ("recover crm s", 13),
    ("spend", 10),
    ("prices", 10),
    ("pass", 4),
)


def row(r: Report) -> list[str]:
    return [
        r.scenario + (f" (needs {r.needs})" if r.needs else ""),
        str(r.leads_in),
        str(r.stored),
        str(r.dialed),
        str(r.max_calls_per_lead),
        str(r.leads_called_twice),
        str(r.max_crm_writes_per_lead),
        str(r.leads_written_twice),
        "-" if r.dial_recovery_s is None else f"{r.dial_recovery_s:.1f}",
        "-" if r.crm_recovery_s is None else f"{r.crm_recovery_s:.1f}",
        r.spend_usd,
        r.settled_prices_usd,
        "yes" if r.passed() else "NO",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m faults", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument(
        "--rate", type=float, default=1.0, help="leads per second (Twilio dials 1 a second by default)"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="load per scenario")
    parser.add_argument("--settle", type=float, default=180.0, help="longest wait for every lead")
    parser.add_argument(
        "--call-seconds",
        type=int,
        default=75,
        help="call length at the fake Twilio (over 60 s a call costs more than its 1-minute "
        "estimate, so spend equals Twilio's prices only once they are looked up)",
    )
    parser.add_argument("--json", type=Path, help="write every report here")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(SCENARIOS)
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    # SIGTERM unwinds like Ctrl-C: the private PostgreSQL, Redis and mesh are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    reports: list[Report] = []
    print("  ".join(name.ljust(width) for name, width in COLUMNS), flush=True)
    with private_stack() as stack:
        for name in names:
            report = run_scenario(
                stack, SCENARIOS[name], args.rate, args.seconds, args.settle, args.call_seconds
            )
            reports.append(report)
            cells = row(report)
            print("  ".join(c.ljust(w) for c, (_, w) in zip(cells, COLUMNS, strict=True)), flush=True)
            if report.not_dialed_states:
                print(f"    not dialed: {report.not_dialed_states}", flush=True)
            if report.unsettled_jobs:
                print(f"    not settled yet: {report.unsettled_jobs}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = [{**dataclasses.asdict(r), "lost": r.lost, "passed": r.passed()} for r in reports]
        args.json.write_text(json.dumps(doc, indent=2))
    return 0 if all(r.passed() for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())

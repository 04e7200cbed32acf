"""Run every fault scenario (or those named) and print the issue's table: `python -m tests.faults.measure
[--rows N] [--runs K] [NAME ...]`. `make soak` and docs/reliability.md use it."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from tests.faults.scenarios import BY_NAME, SCENARIOS, run_scenario
from tests.support.fault_stack import FaultStack, PostgresCluster


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="*")
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--code-root", type=Path, help="run the workers and beat from this checkout (e.g. main, for the before figures)")
    args = parser.parse_args()
    chosen = [BY_NAME[name] for name in args.names] if args.names else SCENARIOS
    postgres = PostgresCluster()
    postgres.init()
    results = []
    try:
        for scenario in chosen:
            for run in range(args.runs):
                root = Path(tempfile.mkdtemp(prefix=f"fault-{scenario.name}-"))
                started = time.monotonic()
                with FaultStack(
                    root, rows=args.rows, postgres=postgres, code_root=args.code_root, redis_persistent=scenario.redis_persistent
                ) as stack:
                    result = run_scenario(stack, scenario)
                row = {
                    "scenario": scenario.name, "title": scenario.title, "run": run + 1, "rows": args.rows,
                    "duplicates": result.duplicates, "distinct": result.distinct_received, "states": result.states,
                    "audit_exit": result.audit_exit, "seconds": round(time.monotonic() - started, 1),
                }  # fmt: skip
                results.append(row)
                print(json.dumps(row), flush=True)
                if result.audit_exit != 0:
                    print(result.audit_output, flush=True)
                shutil.rmtree(root, ignore_errors=True)
    finally:
        postgres.destroy()
    print(f"\n| fault | accepted twice, of {args.rows:,} | final states | audit |\n|---|---|---|---|")
    for row in results:
        states = ", ".join(f"{k} {v}" for k, v in sorted(row["states"].items()))
        print(f"| {row['title']} (run {row['run']}) | {row['duplicates']} | {states} | {'pass' if row['audit_exit'] == 0 else 'FAIL'} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""Wall time per asset of the latest run of the main job, from the Dagster instance ($DAGSTER_HOME).

``python -m pipelines.timings [--json PATH]`` (README command 1 prints it after the run)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import dagster as dg
from dagster._core.errors import DagsterHomeNotSetError  # not exported at the top level


def latest_step_times(instance: dg.DagsterInstance, job_name: str = "realrag") -> tuple[str | None, list[dict]]:
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=job_name), limit=1)
    if not runs:
        return None, []
    run = runs[0]
    stats = instance.get_run_step_stats(run.run_id)
    rows = [
        {
            "asset": s.step_key,
            "status": s.status.value if s.status else None,
            "seconds": round(s.end_time - s.start_time, 1) if s.end_time and s.start_time else None,
        }
        for s in sorted(stats, key=lambda s: s.start_time or 0)
    ]
    return run.run_id, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    args = parser.parse_args()
    try:
        instance = dg.DagsterInstance.get()
    except DagsterHomeNotSetError:
        print("DAGSTER_HOME is not set: export DAGSTER_HOME=$PWD (the repository root) before the run and this command")
        raise SystemExit(2)
    run_id, rows = latest_step_times(instance)
    if run_id is None:
        print("no run of the realrag job in this Dagster instance (is DAGSTER_HOME set?)")
        return
    total = sum(r["seconds"] or 0 for r in rows)
    print(f"== time per asset, run {run_id[:8]} (steps in one process)")
    for r in rows:
        print(f"  {r['asset']:24s} {r['seconds'] if r['seconds'] is not None else '-':>8} s  {r['status']}")
    print(f"  {'sum of steps':24s} {total:8.1f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"run_id": run_id, "steps": rows, "sum_seconds": total}, indent=2))


if __name__ == "__main__":
    main()

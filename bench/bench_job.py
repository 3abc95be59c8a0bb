"""Benchmark: the main job's wall time per asset, and Dagster's own overhead, per executor, side by side.

Each executor runs the whole job (`dagster job execute`, the CLI users run) on a copy of the profile rooted in a
fresh temporary folder, with a fresh persistent Dagster instance holding the project's pools and run retries.
From the instance's event log: each step's interval (STEP_START to its end), and Dagster's overhead = the
command's wall time minus the time during which at least one step was computing (CLI start-up and loading the
code location before the run starts, executor start-up, step process starts and event writes between steps,
shut-down). Share = overhead / wall time. Target: choose the default executor that keeps the share small.
Writes bench/results/job_<profile>.json.

    .venv/bin/python bench/bench_job.py                                   # smoke profile, both executors
    .venv/bin/python bench/bench_job.py --config configs/demo.yaml --executors in_process   # about 30 min
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _results import write

ROOT = Path(__file__).resolve().parent.parent
JOBS = {"in_process": "realrag", "multiprocess": "realrag_multiprocess"}
PATH_KEYS = {
    "artifacts_root",
    "npm_cache",
    "image_dir",
    "captions",
    "root",
    "shipped_weights",
    "cache_dir",
    "weights",
    "model_cache",
}


def rooted_profile(config: Path, new_root: Path) -> dict:
    """The profile with every path absolute and everything under its artifacts root moved to ``new_root``."""
    data = yaml.safe_load(config.read_text())
    if "extends" in data:
        raise SystemExit("give a profile without `extends:` (the benchmark rewrites its paths)")
    old_root = (config.parent / data["artifacts_root"]).resolve()

    def fix(node):
        if isinstance(node, dict):
            return {k: (move(v) if k in PATH_KEYS and isinstance(v, str) else fix(v)) for k, v in node.items()}
        return [fix(v) for v in node] if isinstance(node, list) else node

    def move(value: str) -> str:
        if "://" in value or not (value.startswith(".") or value.startswith("/") or "/" in value):
            return value
        path = (config.parent / value).resolve()
        return str(new_root / path.relative_to(old_root)) if path.is_relative_to(old_root) else str(path)

    return {**fix(data), "artifacts_root": str(new_root)}


def intervals_union(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def run_executor(name: str, config: Path, work: Path) -> dict:
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef  # not exported at the top level

    home = work / f"home_{name}"
    home.mkdir()
    instance_cfg = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    (home / "dagster.yaml").write_text(yaml.safe_dump({k: instance_cfg[k] for k in ("concurrency", "run_retries")}))
    profile = work / f"{name}.yaml"
    profile.write_text(yaml.safe_dump(rooted_profile(config, work / f"artifacts_{name}")))
    env = {**os.environ, "DAGSTER_HOME": str(home), "REALRAG_CONFIG": str(profile), "TQDM_DISABLE": "1"}
    cmd = [
        str(Path(sys.executable).parent / "dagster"),
        "job",
        "execute",
        "-m",
        "pipelines.definitions",
        "-j",
        JOBS[name],
    ]
    print(f"[{name}] {' '.join(cmd[-4:])} on {config} ...", flush=True)
    start_wall, start = time.time(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or "RUN_SUCCESS" not in proc.stdout + proc.stderr:
        raise SystemExit(f"[{name}] the run failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    run = instance.get_runs(limit=1)[0]
    events = [e for e in instance.all_logs(run.run_id) if e.dagster_event is not None]
    starts, steps, run_start, run_end = {}, [], None, None
    E = dg.DagsterEventType
    for e in events:
        kind = e.dagster_event.event_type
        if kind == E.RUN_START:
            run_start = e.timestamp
        elif kind in (E.RUN_SUCCESS, E.RUN_FAILURE):
            run_end = e.timestamp
        elif kind == E.STEP_START:
            starts[e.step_key] = e.timestamp
        elif kind in (E.STEP_SUCCESS, E.STEP_FAILURE) and e.step_key in starts:
            steps.append({"step": e.step_key, "start": starts[e.step_key], "seconds": e.timestamp - starts[e.step_key]})
    steps.sort(key=lambda s: s["start"])
    computing = intervals_union([(s["start"], s["start"] + s["seconds"]) for s in steps])
    first, last = steps[0]["start"], max(s["start"] + s["seconds"] for s in steps)
    out = {
        "job": JOBS[name],
        "wall_seconds": round(wall, 1),
        "steps": len(steps),
        "computing_seconds": round(computing, 1),
        "overhead_seconds": round(wall - computing, 1),
        "overhead_share": (wall - computing) / wall,
        "before_run_start": round(run_start - start_wall, 1),
        "run_start_to_first_step": round(first - run_start, 1),
        "gaps_between_steps": round((last - first) - computing, 1),
        "after_last_step": round(start_wall + wall - last, 1),
        "run_end_to_exit": round(start_wall + wall - run_end, 1),
        "per_step": [{"step": s["step"], "seconds": round(s["seconds"], 2)} for s in steps],
    }
    print(
        f"[{name}] wall {wall:.1f} s, steps computing {computing:.1f} s, overhead {wall - computing:.1f} s "
        f"({out['overhead_share']:.1%}): before the run {out['before_run_start']} s, to the first step "
        f"{out['run_start_to_first_step']} s, between steps {out['gaps_between_steps']} s, after the last "
        f"{out['after_last_step']} s",
        flush=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "smoke.yaml")
    parser.add_argument("--executors", default="in_process,multiprocess")
    parser.add_argument("--keep", type=Path, help="keep the runs' folders here instead of a temporary folder")
    args = parser.parse_args()
    names = [n.strip() for n in args.executors.split(",") if n.strip()]
    if unknown := set(names) - set(JOBS):
        raise SystemExit(f"unknown executor(s) {sorted(unknown)}; choose from {sorted(JOBS)}")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = {n: run_executor(n, args.config.resolve(), work) for n in names}
    profile = args.config.stem
    first = results[names[0]]
    print(f"\n== time per step, {names[0]} executor, profile {profile}")
    for s in sorted(first["per_step"], key=lambda s: -s["seconds"]):
        print(f"  {s['seconds']:9.1f} s  {s['step']}")
    ratios = {f"Dagster overhead / wall time ({n})": (r["overhead_share"], None) for n, r in results.items()}
    if {"in_process", "multiprocess"} <= set(results):
        ratios["wall time multiprocess / in process"] = (
            results["multiprocess"]["wall_seconds"] / results["in_process"]["wall_seconds"],
            None,
        )
    config = args.config.resolve()
    shown = str(config.relative_to(ROOT)) if config.is_relative_to(ROOT) else str(config)
    write(f"job_{profile}", f"Main job ({profile} profile)", {"config": shown, "executors": names}, results, ratios)


if __name__ == "__main__":
    main()

"""Shared by the benchmarks: the machine they ran on, and one JSON per benchmark in bench/results/ plus the
Markdown table the README quotes (bench/results/README.md, rebuilt from every JSON there)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import time
from contextlib import contextmanager
from pathlib import Path

# REALRAG_BENCH_RESULTS sends a trial run's figures elsewhere instead of replacing the committed ones
RESULTS = Path(os.environ.get("REALRAG_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far: Linux's VmHWM (ru_maxrss would carry the parent's peak over
    fork and exec into a child process), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def reset_peak_rss() -> bool:
    """Start VmHWM again from the current resident size (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@contextmanager
def timed(out: dict, key: str):
    start = time.perf_counter()
    yield
    out[key] = time.perf_counter() - start


def check(value: float, target: str) -> bool:
    """``target`` like '>= 0.9' or '<= 0.02'."""
    op, bound = target.split()
    return value >= float(bound) if op == ">=" else value <= float(bound)


def write(
    name: str, title: str, params: dict, measured: dict, ratios: dict[str, tuple[float, str | None]], notes: str = ""
) -> Path:
    """One benchmark's figures: ``ratios`` maps a name to (value, target or None); each gets met: true/false."""
    RESULTS.mkdir(exist_ok=True)
    record = {
        "benchmark": name,
        "title": title,
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "params": params,
        "measured": measured,
        "ratios": {
            k: {"value": v, "target": t, "met": None if t is None else check(v, t)} for k, (v, t) in ratios.items()
        },
        "notes": notes,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    write_table()
    for key, r in record["ratios"].items():
        verdict = "" if r["target"] is None else f"  target {r['target']}: {'met' if r['met'] else 'MISSED'}"
        print(f"{key}: {r['value']:.4g}{verdict}")
    print(f"wrote {path}")
    return path


def write_table() -> Path:
    rows = [
        "| benchmark | ratio | value | target | met | parameters | machine | date |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(RESULTS.glob("*.json")):
        r = json.loads(path.read_text())
        if "ratios" not in r:  # a study's own record (e.g. retriever_generalisation.json, with its .md), no ratios
            continue
        m = r["machine"]
        where = f"{m.get('gpu') or m['cpu']}, {m['cores']} cores, {m.get('torch_threads', '?')} torch threads"
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        for key, v in r["ratios"].items():
            met = "" if v["met"] is None else ("yes" if v["met"] else "**no**")
            rows.append(
                f"| {r['title']} | {key} | {v['value']:.4g} | {v['target'] or ''} | {met} | {params} | {where} "
                f"| {r['date']} |"
            )
    out = RESULTS / "README.md"
    out.write_text(
        "# Latest benchmark figures\n\nWritten by the scripts in bench/ (one JSON each here); the "
        "README quotes this table.\n\n" + "\n".join(rows) + "\n"
    )
    return out

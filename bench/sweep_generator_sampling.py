"""The demo generator's property checks (judge top-1 of its samples, n=96 a cell) with other samplers and step
counts, side by side on the same weights, prompts, references and seeds: what `generator.sampling` should be.

Run after README command 1:  .venv/bin/python bench/sweep_generator_sampling.py [ddim:25,ddim:15,...]
"""

import sys
import time

from realrag_core.clip.bundle import load_clip
from realrag_core.config.loading import load_config
from realrag_core.generators.demo.training import check_generator
from realrag_core.generators.registry import open_stored_generator
from realrag_core.data.sources.registry import iter_records
from realrag_core.storage.store import ArtifactStore
from realrag_core.data.world import load_world

from _results import write

variants = (sys.argv[1] if len(sys.argv) > 1 else "ddim:25,ddim:15,dpmsolver++:15,unipc:12").split(",")
cfg = load_config("configs/demo.yaml")
store = ArtifactStore(cfg.artifacts_root)
gen, info, _ = open_stored_generator(cfg, store)
judge = load_clip(store.judge_dir)
world = load_world(store.world_dir)
records = list(iter_records(cfg.source))
rows = []
for v in variants:
    kind, steps = v.split(":")
    gen.scheduler, gen.steps = kind, int(steps)
    start = time.perf_counter()
    res, grid = check_generator(gen, judge, world, records, cfg)
    seconds = time.perf_counter() - start
    grid.save(store.reports_dir / f"generator_grid_{kind}_{steps}.png")
    row = {
        "sampler": kind,
        "steps": int(steps),
        "seconds": round(seconds, 1),
        **{k: round(r["acc"], 3) for k, r in res.items()},
        "n": res["known/text_only"]["n"],
    }
    rows.append(row)
    print(row, flush=True)
first = rows[0]
write(
    "sweep_generator_sampling",
    "demo generator: samplers side by side",
    {"weights": info.get("key"), "guidance": gen.guidance, "n_per_cell": first["n"]},
    {"rows": rows},
    {
        f"{r['sampler']}:{r['steps']} time / {first['sampler']}:{first['steps']}": (
            round(r["seconds"] / first["seconds"], 3),
            None,
        )
        for r in rows[1:]
    },
    "judge top-1 of the generator's property checks for each sampler; text bar known/text_only, reference bar "
    "novel/text_and_reference",
)

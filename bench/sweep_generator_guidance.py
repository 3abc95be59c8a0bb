"""Guidance sweep of the demo generator's property checks (judge top-1 of its samples), on the demo artifacts.

Run after README command 1:  .venv/bin/python bench/sweep_generator_guidance.py
"""

import time
from realrag_core.config.loading import load_config
from realrag_core.storage.store import ArtifactStore
from realrag_core.clip.bundle import load_clip
from realrag_core.data.sources.registry import iter_records
from realrag_core.data.world import load_world
from realrag_core.generators.demo.training import check_generator
from realrag_core.generators.registry import open_stored_generator

cfg = load_config("configs/demo.yaml")
store = ArtifactStore(cfg.artifacts_root)
gen, info, _ = open_stored_generator(cfg, store)
judge = load_clip(store.judge_dir)
world = load_world(store.world_dir)
records = list(iter_records(cfg.source))
for g in (1.0, 3.5, 6.0):
    gen.guidance = g
    t = time.time()
    res, grid = check_generator(gen, judge, world, records, cfg)
    grid.save(store.reports_dir / f"generator_grid_guidance_{g}.png")
    print(
        f"guidance {g}:",
        {k: (round(v["acc"], 3), v["n"]) for k, v in res.items()},
        f"{time.time() - t:.0f}s",
        flush=True,
    )

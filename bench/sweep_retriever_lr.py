"""Validation sweep of the retriever fine-tune (lr x steps x reflective on/off) on the demo artifacts.

Run after README command 1:  .venv/bin/python bench/sweep_retriever_lr.py
Prints validation and training-prompt top-1 per setting next to the zero-shot base."""

import json
import itertools
import time
import pyarrow.parquet as pq
from realrag_core.config.loading import load_config
from realrag_core.storage.store import ArtifactStore
from realrag_core.data.prompts import load_prompts
from realrag_core.embed.table import open_table_readonly, read_rows
from realrag_core.clip.bundle import load_clip
from realrag_core.retriever.fit import table_view, train_retriever, validate, negatives_by_prompt

cfg = load_config("configs/demo.yaml")
store = ArtifactStore(cfg.artifacts_root)
prompts = load_prompts(store.world_dir)
train = [p for p in prompts if p.retriever_split == "train"]
val = [p for p in prompts if p.retriever_split == "val"]
table = table_view(read_rows(open_table_readonly(cfg.lancedb_uri, cfg.embeddings.table_name)))
negs = negatives_by_prompt(pq.read_table(store.negatives_path).to_pylist())
base = load_clip(store.clip_dir)
print("zero-shot", json.dumps({s: round(m["top1"], 3) for s, m in validate(base, val, table).items()}), flush=True)
print("train fit zero-shot", {s: round(m["top1"], 3) for s, m in validate(base, train, table).items()})
for lr, steps, refl in itertools.product([1e-5, 3e-5, 1e-4], [100, 300], [False, True]):
    clip = load_clip(store.clip_dir)
    t = time.time()
    train_retriever(clip, train, table, negs if refl else {}, steps=steps, batch_size=64, lr=lr, seed=0)
    v = validate(clip, val, table)
    tr = validate(clip, train, table)
    print(
        f"lr={lr:g} steps={steps} reflective={refl}: val",
        {s: (round(m["top1"], 3), round(m["top5"], 3)) for s, m in v.items()},
        "train",
        {s: round(m["top1"], 3) for s, m in tr.items()},
        f"{time.time() - t:.0f}s",
        flush=True,
    )

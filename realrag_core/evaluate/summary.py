"""Print what the last run of each stage measured, from the profile's reports/ folder.

``python -m realrag_core.evaluate.summary`` (uses $REALRAG_CONFIG, default configs/demo.yaml).
"""

from __future__ import annotations

import os
from pathlib import Path

from realrag_core.config.base import CONFIG_ENV_VAR
from realrag_core.config.loading import load_config
from realrag_core.data.prompts import PROTOCOLS, row_protocol
from realrag_core.evaluate.stats import wilson_interval
from realrag_core.storage.store import ArtifactStore, profile_hint, retriever_key


def summary_lines(store: ArtifactStore) -> list[str]:
    lines = []
    world = store.read_report("world_splits")
    if world:
        lines.append(
            f"world      {world['concepts']} concepts ({world['known']} known / {world['novel']} novel), "
            f"hash {world['hash']}"
        )
    clip = store.read_report("clip_backbone")
    if clip:
        origin = (
            f"trained {clip['train_seconds']} s on {clip['train_images']} images"
            if "train_seconds" in clip
            else f"pretrained, loaded in {clip.get('load_seconds', '?')} s"  # open_clip_pretrained: nothing trained here
        )
        lines.append(
            f"clip       {clip['model_id']}, {clip['params'] / 1e6:.2f}M params, {origin}"
            f"{' (reused)' if clip.get('reused') else ''}"
        )
        sel = clip.get("selection")
        if sel:
            lines.append(
                f"selection  top-1 {sel['top1']:.3f} [{sel['top1_lo']:.2f}, {sel['top1_hi']:.2f}] on the "
                f"{sel['queries']} selection concepts' database images (what its recipe was chosen on)"
            )
        lines.append("zero-shot  text->image concept accuracy on database images (never seen by the CLIP):")
        for split, m in clip["zero_shot"].items():
            lines.append(
                f"           {split:6s} top-1 {m['top1']:.3f} [{m['top1_lo']:.2f}, {m['top1_hi']:.2f}]  "
                f"top-5 {m['top5']:.3f} [{m['top5_lo']:.2f}, {m['top5_hi']:.2f}]  (n={m['queries']} queries, 95% Wilson)"
            )
    emb = store.read_report("image_embeddings")
    if emb:
        lines.append(
            f"embeddings {emb['rows']} rows (table v{emb['table_version']}): inserted {emb['inserted']}, "
            f"skipped {emb['skipped_unchanged']}, rejected {emb['rejected']}, "
            + (f"paths rewritten {emb['paths_refreshed']} (moved), " if emb.get("paths_refreshed") else "")
            + f"index: {emb['index']}, {emb['seconds']} s"
        )
    judge = store.read_report("judge")
    if judge:
        c, held = judge["ceiling"], judge.get("ceiling_split", "database")
        lines.append(
            f"judge      {judge['model_id']}: ceiling (top-1 among the world's concepts, {held} images it never "
            f"trained on) known {c[f'{held}/known']['acc']:.3f} [{c[f'{held}/known']['lo']:.2f}, "
            f"{c[f'{held}/known']['hi']:.2f}] (n={c[f'{held}/known']['n']}), novel {c[f'{held}/novel']['acc']:.3f} "
            f"[{c[f'{held}/novel']['lo']:.2f}, {c[f'{held}/novel']['hi']:.2f}] (n={c[f'{held}/novel']['n']})"
        )
    gen = store.read_report("generator")
    if gen:
        lines.append(f"generator  {gen['generator_id']} ({gen['source']} weights); judge top-1 of samples:")
        for name, m in gen["checks"].items():
            lines.append(f"           {name:26s} {m['acc']:.3f} [{m['lo']:.2f}, {m['hi']:.2f}] (n={m['n']})")
        if gen.get("bars"):
            lines.append("           bars: the demo generator's checks (issue 3), meaningful on a demo-like world only")
        for name, bar in (gen.get("bars") or {}).items():
            lines.append(
                f"           bar {name:22s} {'met' if bar['met'] else 'NOT met'}: {bar['value']:.3f} "
                f"(needs {bar['needed']:.3f})"
            )
        eff = gen.get("reference_effect")
        if eff:
            lines.append(
                f"           reference effect (judge names the reference's concept, with - without): "
                f"{eff['effect']:+.3f} [{eff['effect_lo']:+.2f}, {eff['effect_hi']:+.2f}] (n={eff['n']})"
            )
    keys = [retriever_key(n, p) for p in PROTOCOLS for n in ("contrastive_retriever", "retriever")]
    for name in keys:
        r = store.read_report(name)
        if r:
            grid = ", ".join(f"{g['lr']:g}: {g['score']:.3f}" for g in r.get("lr_grid", []))
            val = ", ".join(
                f"{s} top-1 {m['top1']:.3f} [seeds {m.get('top1_min', m['top1']):.3f}-{m.get('top1_max', m['top1']):.3f}] "
                f"(zero-shot {r['validation_zero_shot'][s]['top1']:.3f}, n={m['queries']})"
                for s, m in r["validation"].items()
            )
            lines.append(
                f"{name:10s} ({row_protocol(r)}) lr grid (val top-1, seed {r['seeds'][0]['seed']}) {grid}; chosen {r.get('chosen_lr')}"
            )
            lines.append(f"           validation over {len(r['seeds'])} seeds: {val}; {r['train_seconds']} s")
            lines += small_validation_warnings(r["validation"])
    ablations = Path(store.root, "reports", "retriever_ablations.md")
    if ablations.is_file():
        lines += ["", "== retriever ablations on validation (reports/retriever_ablations.md)", ablations.read_text()]
    results = Path(store.root, "reports", "results.md")
    if results.is_file():
        lines += ["", "== results (reports/results.md)", results.read_text()]
    return lines or ["no reports yet: run the job first"]


SMALL_VALIDATION = 30  # queries: below it a 95% interval on top-1 is wider than about +-0.15


def small_validation_warnings(validation: dict) -> list[str]:
    """A warning per validation split with too few queries to choose a learning rate or compare to zero-shot."""
    out = []
    for split, m in validation.items():
        n = int(m["queries"])
        if n < SMALL_VALIDATION:
            lo, hi = wilson_interval(round(m["top1"] * n), n)
            out.append(
                f"           WARNING: {split} validation has {n} queries (top-1 95% interval [{lo:.2f}, {hi:.2f}]): "
                "the learning-rate choice and the comparison with zero-shot are within noise; add classes "
                f"(a validation split of {SMALL_VALIDATION}+ queries)"
            )
    return out


def main() -> None:
    cfg = load_config()
    print("== realrag " + profile_hint(cfg, "reports", bool(os.environ.get(CONFIG_ENV_VAR))))
    for line in summary_lines(ArtifactStore(cfg.artifacts_root)):
        print(line)


if __name__ == "__main__":
    main()

"""The results table: arms x splits (known, novel) x metrics, with n and 95% intervals, plus paired
comparisons between arms, a bar chart and an image grid."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from realrag_core.clip.bundle import ClipBundle
from realrag_core.evaluate.metrics import (
    MIN_FID_SAMPLES,
    clip_scores,
    concept_accuracy,
    distribution_metrics,
    inception_metrics,
)
from realrag_core.evaluate.plots import image_grid
from realrag_core.data.prompts import row_protocol
from realrag_core.rag.retrieve import ARMS
from realrag_core.evaluate.stats import crossed_bootstrap

PAIRS = (
    ("reflective", "contrastive"),
    ("contrastive", "clip"),
    ("clip", "none"),
    ("reflective", "clip"),
    ("reflective", "none"),
    ("contrastive", "none"),
    ("oracle", "none"),
    ("oracle", "reflective"),
)


def _row(arm, split, metric, value, n, lo=None, hi=None):
    return {
        "arm": arm,
        "split": split,
        "metric": metric,
        "value": float(value),
        "n": int(n),
        "lo": None if lo is None else float(lo),
        "hi": None if hi is None else float(hi),
    }


def _label(kind: str, rseed) -> str:
    return kind if rseed is None else f"{kind}@{rseed}"


def evaluate(
    manifest: list[dict],
    rag_dir: Path,
    judge: ClipBundle,
    *,
    world_concepts: Sequence[str],
    reference: dict[str, list[tuple[str, Image.Image]]],
    caption: str,
    scorer: ClipBundle | None = None,
    inception=None,
) -> tuple[list[dict], list[dict]]:
    """``reference[split]``: (concept, image) of the FID reference set (real images, disjoint from the
    database) for that split's evaluation concepts. ``scorer``: the CLIP-T/CLIP-I model (default: the judge);
    ``inception``: an ``InceptionConfig`` for standard fid/kid rows (default: none).

    Fine-tuned arms have one model per training seed: their rows pool every seed (intervals by bootstrap over
    prompts), and ``arm@seed`` rows give each seed alone. FID/KID use the first training seed only, so every
    arm has the same number of images (FID is biased by sample size)."""
    scored = [{**r, "kind": r["arm"], "image_path": rag_dir / r["path"]} for r in manifest]
    seen = set()
    for r in manifest:  # copy rows: the retrieved image itself, once per (arm, retriever seed, prompt)
        key = (r["arm"], r["retriever_seed"], r["prompt_id"])
        if r["arm"] != "none" and r["retrieved_path"] and key not in seen:
            seen.add(key)
            scored.append({**r, "kind": f"copy_{r['arm']}", "image_path": Path(r["retrieved_path"])})
    unique = sorted({(str(s["image_path"]), s["prompt"], s["concept"]) for s in scored})
    images = [Image.open(u[0]).convert("RGB") for u in unique]
    concepts = [u[2] for u in unique]
    acc = concept_accuracy(judge, images, concepts, list(world_concepts), caption)
    clip = clip_scores(
        scorer or judge,
        images,
        [u[1] for u in unique],
        concepts,
        [pair for split in sorted(reference) for pair in reference[split]],
    )
    by_key = {u: (acc[i], clip["clip_t"][i], clip["clip_i"][i], images[i]) for i, u in enumerate(unique)}
    for s in scored:
        s["concept_acc"], s["clip_t"], s["clip_i"], s["image"] = by_key[
            (str(s["image_path"]), s["prompt"], s["concept"])
        ]
    first_rseed = {}
    for s in scored:
        if s["retriever_seed"] is not None:
            first_rseed[s["kind"]] = min(first_rseed.get(s["kind"], s["retriever_seed"]), s["retriever_seed"])
    rows = []
    kinds = list(ARMS) + [f"copy_{a}" for a in ARMS if a != "none"]
    for kind in kinds:
        for split in ("known", "novel"):
            sel = [s for s in scored if s["kind"] == kind and s["generator_split"] == split]
            if not sel:
                continue
            rseeds = sorted({s["retriever_seed"] for s in sel}, key=lambda x: -1 if x is None else x)
            groups_of = [(kind, sel)] + (
                [(_label(kind, r), [s for s in sel if s["retriever_seed"] == r]) for r in rseeds]
                if len(rseeds) > 1
                else []
            )
            for label, part in groups_of:
                for metric in ("concept_acc", "clip_t", "clip_i"):
                    have = [s for s in part if not np.isnan(s[metric])]
                    if have:
                        b = crossed_bootstrap(
                            [s[metric] for s in have], [s["concept"] for s in have], [s["retriever_seed"] for s in have]
                        )
                        rows.append(_row(label, split, metric, b["mean"], b["n"], b["lo"], b["hi"]))
                if kind in ARMS and kind != "none":
                    per = {(s["prompt_id"], s["retriever_seed"]): s for s in part}
                    b = crossed_bootstrap(
                        [float(s["retrieved_concept"] == s["concept"]) for s in per.values()],
                        [s["concept"] for s in per.values()],
                        [k[1] for k in per],
                    )
                    rows.append(_row(label, split, "retrieval_acc", b["mean"], b["n"], b["lo"], b["hi"]))
                    if label == kind:
                        for style, count in Counter(s["retrieved_style"] for s in part).items():
                            rows.append(_row(kind, split, f"retrieved_style/{style}", count / len(part), len(part)))
            if kind in ARMS and reference.get(split):
                first = [s["image"] for s in sel if s["retriever_seed"] == first_rseed.get(kind)]
                real = [im for _, im in reference[split]]
                dist = distribution_metrics(judge, real, first) or {}
                if inception is not None:
                    dist.update(inception_metrics(inception, real, first) or {})
                for metric in ("fid_judge", "kid_judge", "fid", "kid"):
                    if metric in dist:
                        rows.append(_row(kind, split, metric, dist[metric], dist["n_fake"]))
    paired = paired_comparisons(scored)
    return rows, paired


def paired_comparisons(scored: list[dict]) -> list[dict]:
    """Arm a minus arm b on the same (prompt, seed): mean difference in concept accuracy with a 95% interval
    from a bootstrap over concepts and retriever training seeds together (``stats.crossed_bootstrap``), its
    standard error and the smallest difference it would detect (``mde``: 2.8 standard errors, 95% confidence
    and 80% power), and how often the two arms retrieved different images. Two fine-tuned arms are paired
    training seed with training seed; a fine-tuned arm against a single-model arm pairs every seed."""
    by = defaultdict(lambda: defaultdict(dict))
    for s in scored:
        if s["kind"] in ARMS:
            by[(s["prompt_id"], s["seed"], s["generator_split"])][s["kind"]][s["retriever_seed"]] = s
    out = []
    for a, b in PAIRS:
        for split in ("known", "novel"):
            pairs = []
            for key, arms in by.items():
                if key[2] != split or a not in arms or b not in arms:
                    continue
                ra, rb = arms[a], arms[b]
                if None in ra and None in rb:
                    pairs.append((key, ra[None], rb[None]))
                elif None in rb:
                    pairs += [(key, sa, rb[None]) for sa in ra.values()]
                elif None in ra:
                    pairs += [(key, ra[None], sb) for sb in rb.values()]
                else:
                    pairs += [(key, ra[r], rb[r]) for r in sorted(set(ra) & set(rb))]
            if not pairs:
                continue
            boot = crossed_bootstrap(
                [x["concept_acc"] - y["concept_acc"] for _, x, y in pairs],
                [x["concept"] for _, x, _ in pairs],
                [x["retriever_seed"] if x["retriever_seed"] is not None else y["retriever_seed"] for _, x, y in pairs],
            )
            retrievals = {
                (k[0], x["retriever_seed"], y["retriever_seed"]): x.get("retrieved_id") != y.get("retrieved_id")
                for k, x, y in pairs
            }
            out.append(
                {
                    "a": a,
                    "b": b,
                    "split": split,
                    "metric": "concept_acc",
                    "diff": boot["mean"],
                    "lo": boot["lo"],
                    "hi": boot["hi"],
                    "se": boot["se"],
                    "mde": boot["mde"],
                    "n": len(pairs),
                    "prompts": len({k[0] for k, _, _ in pairs}),
                    "concepts": boot["concepts"],
                    "retriever_seeds": boot["seeds"],
                    "different_retrievals": float(np.mean(list(retrievals.values()))),
                }
            )
    return out


def write_results(
    rows: list[dict], paired: list[dict], folder: Path, min_fid_samples: int = MIN_FID_SAMPLES
) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "results.parquet")
    pq.write_table(pa.Table.from_pylist(paired), folder / "paired.parquet")
    (folder / "results.md").write_text(results_markdown(rows, paired, min_fid_samples))
    bar_chart(rows, folder / "results.png")
    return {"parquet": folder / "results.parquet", "md": folder / "results.md", "chart": folder / "results.png"}


def _fmt(r):
    if r is None:
        return "-"
    ci = f" [{r['lo']:.2f}, {r['hi']:.2f}]" if r["lo"] is not None else ""
    return f"{r['value']:.3f}{ci} (n={r['n']})"


def known_cost(paired: list[dict]) -> list[dict]:
    """Every arm minus ``none`` on known concepts, in ``ARMS`` order: does RAG cost what the generator draws?"""
    rows = {p["a"]: p for p in paired if p["b"] == "none" and p["split"] == "known"}
    return [rows[a] for a in ARMS if a in rows]


def gap_closed(index: dict, split: str) -> dict[str, float]:
    """(arm - none) / (oracle - none) in concept accuracy for every retrieving arm: 0 is no better than no
    retrieval, 1 as good as handing the generator its own concept. Empty without an oracle or a gap."""
    none, oracle = index.get(("none", split, "concept_acc")), index.get(("oracle", split, "concept_acc"))
    if none is None or oracle is None or oracle["value"] - none["value"] <= 0:
        return {}
    return {
        arm: (index[(arm, split, "concept_acc")]["value"] - none["value"]) / (oracle["value"] - none["value"])
        for arm in ARMS
        if arm not in ("none", "oracle") and (arm, split, "concept_acc") in index
    }


PROTOCOL_TITLES = {
    "unseen_concepts": "protocol unseen_concepts: evaluation concepts the retrievers never trained on",
    "seen_concepts": "protocol seen_concepts (the paper's): every concept trains; evaluation prompts use templates "
    "the retrievers never trained or were chosen on",
}


def results_markdown(rows: list[dict], paired: list[dict], min_fid_samples: int = MIN_FID_SAMPLES) -> str:
    """One section per protocol (rows without a ``protocol`` are unseen_concepts), each the arms x metrics
    tables, the known-concept cost, and the paired differences."""
    protocols = list(dict.fromkeys([row_protocol(r) for r in rows] + [row_protocol(p) for p in paired]))
    if len(protocols) <= 1:
        return _protocol_markdown(rows, paired, min_fid_samples)
    parts = []
    for protocol in protocols:
        parts += [
            f"## {PROTOCOL_TITLES.get(protocol, protocol)}",
            "",
            _protocol_markdown(
                [r for r in rows if row_protocol(r) == protocol],
                [p for p in paired if row_protocol(p) == protocol],
                min_fid_samples,
            ),
        ]
    return "\n".join(parts)


def _protocol_markdown(rows: list[dict], paired: list[dict], min_fid_samples: int = MIN_FID_SAMPLES) -> str:
    index = {(r["arm"], r["split"], r["metric"]): r for r in rows}
    metrics = ["concept_acc", "retrieval_acc", "clip_t", "clip_i", "kid_judge", "fid_judge"]
    metrics += [m for m in ("fid", "kid") if any(r["metric"] == m for r in rows)]
    lines = []
    for split in ("known", "novel"):
        lines += [
            f"### {split} concepts (evaluation prompts only)",
            "",
            "| arm | " + " | ".join(metrics) + " |",
            "|---|" + "---|" * len(metrics),
        ]
        for arm in list(ARMS) + [f"copy_{a}" for a in ARMS if a != "none"]:
            cells = [_fmt(index.get((arm, split, m))) for m in metrics]
            if any(c != "-" for c in cells):
                lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        gap = gap_closed(index, split)
        if gap:
            lines += [
                "",
                "share of the none-to-oracle gap in concept_acc each arm closes: "
                + ", ".join(f"{arm} {share:+.2f}" for arm, share in gap.items()),
            ]
        per_seed = sorted({r["arm"] for r in rows if "@" in r["arm"] and r["split"] == split})
        if per_seed:
            lines += [
                "",
                "each training seed alone:",
                "",
                "| arm@seed | concept_acc | retrieval_acc |",
                "|---|---|---|",
            ]
            for arm in per_seed:
                lines.append(
                    f"| {arm} | {_fmt(index.get((arm, split, 'concept_acc')))} | "
                    f"{_fmt(index.get((arm, split, 'retrieval_acc')))} |"
                )
        lines.append("")
    cost = known_cost(paired)
    if cost:
        lines += [
            "### what retrieval costs on concepts the generator already knows",
            "",
            "known-concept accuracy of each arm minus `none` (paired, 95% CI): "
            + "; ".join(
                f"{p['a']} {p['diff']:+.3f} [{p['lo']:+.2f}, {p['hi']:+.2f}] "
                f"({'no worse' if p['lo'] >= 0 else 'worse' if p['hi'] < 0 else 'cannot tell'})"
                for p in cost
            ),
            "",
        ]
    lines += [
        "### paired differences in judge concept accuracy (same prompts and seeds)",
        "",
        "| a - b | split | diff [95% CI] | detectable min | n images | concepts x retriever seeds | "
        "different retrievals |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in paired:
        lines.append(
            f"| {p['a']} - {p['b']} | {p['split']} | {p['diff']:+.3f} [{p['lo']:+.2f}, {p['hi']:+.2f}] | "
            f"{p['mde']:.3f} | {p['n']} | {p['concepts']} x {p['retriever_seeds']} | "
            f"{p['different_retrievals']:.2f} |"
        )
    if paired:
        lines += [
            "",
            "Intervals resample concepts and retriever training seeds together; the detectable minimum is "
            "2.8 standard errors (95% confidence, 80% power).",
        ]
    n_fid = min((r["n"] for r in rows if r["metric"] in ("fid_judge", "fid")), default=0)
    if n_fid and n_fid < min_fid_samples:
        lines += [
            "",
            f"Warning: FID/KID cells use as few as {n_fid} generated images (< {min_fid_samples}); "
            "FID is biased and unstable at this size, KID less so.",
        ]
    if any(r["metric"] == "fid_judge" for r in rows):
        lines += [
            "",
            "fid_judge/kid_judge use the judge's features, not Inception's: they are not comparable with "
            "published FID numbers"
            + ("; fid/kid are the standard Inception protocol." if any(r["metric"] == "fid" for r in rows) else "."),
        ]
    return "\n".join(lines) + "\n"


BAR_COLOURS = {
    "none": "#999",
    "oracle": "#c9b458",
    "clip": "#6a9fd4",
    "contrastive": "#f0a35e",
    "reflective": "#4caf50",
}


def bar_chart(rows: list[dict], path: Path) -> Path:
    """Judge concept accuracy by arm with 95% intervals: one row of panels per protocol, known | novel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = list(dict.fromkeys(row_protocol(r) for r in rows)) or ["unseen_concepts"]
    fig, grid = plt.subplots(len(protocols), 2, figsize=(10, 3.4 * len(protocols)), dpi=100, sharey=True, squeeze=False)
    panels = [
        (protocol, split, ax) for protocol, axes in zip(protocols, grid) for split, ax in zip(("known", "novel"), axes)
    ]
    for protocol, split, ax in panels:
        sel = [
            r
            for r in rows
            if r["split"] == split and r["metric"] == "concept_acc" and r["arm"] in ARMS and row_protocol(r) == protocol
        ]
        sel.sort(key=lambda r: ARMS.index(r["arm"]))
        x = np.arange(len(sel))
        err = [[r["value"] - r["lo"] for r in sel], [r["hi"] - r["value"] for r in sel]]
        ax.bar(x, [r["value"] for r in sel], yerr=err, capsize=4, color=[BAR_COLOURS[r["arm"]] for r in sel])
        ax.set_xticks(x, [f"{r['arm']}\nn={r['n']}" for r in sel])  # fine-tuned arms pool their training seeds
        ax.set_title(f"{protocol}: {split} concepts (n: images per arm)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for axes in grid:
        axes[0].set_ylabel("judge top-1 concept accuracy")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def results_grid(manifest: list[dict], rag_dir: Path, max_prompts: int = 8) -> Image.Image:
    """One row per evaluation prompt (novel first): no-RAG | retrieved (reflective) | reflective RAG |
    retrieved (clip) | clip RAG."""
    by = defaultdict(dict)
    first_seed = min(r["seed"] for r in manifest)
    for r in sorted(manifest, key=lambda r: -1 if r["retriever_seed"] is None else r["retriever_seed"], reverse=True):
        if r["seed"] == first_seed:  # the first training seed's row wins
            by[r["prompt_id"]][r["arm"]] = r
    chosen = sorted(by.values(), key=lambda d: (d["none"]["generator_split"] != "novel", d["none"]["concept"]))
    cells, labels = [], []
    for d in chosen[:max_prompts]:
        c = d["none"]["concept"]
        for img, lab in (
            (rag_dir / d["none"]["path"], "none"),
            (d["reflective"]["retrieved_path"], "ref: refl"),
            (rag_dir / d["reflective"]["path"], "reflective"),
            (d["clip"]["retrieved_path"], "ref: clip"),
            (rag_dir / d["clip"]["path"], "clip"),
        ):
            cells.append(Image.open(img))
            labels.append(f"{lab} | {c}")
    return image_grid(cells, labels, 5, cell=72)

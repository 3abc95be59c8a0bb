"""Stage 4 kernel: self-reflective contrastive fine-tuning of the base CLIP (and, with the reflective term
off, the plain contrastive baseline, from the same code, data, steps and settings).

Trainable part: the text tower (the image tower stays frozen, so the LanceDB table stays valid and the
image features come from it instead of being recomputed). Training pairs are (prompt of a retriever-train
concept, one database image of that concept); each prompt's reflective negatives are the real images its
G(T) samples were nearest to.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .clip_backbone import CONFIG_NAME, ClipBundle, load_clip, retrieval_accuracy, save_clip
from .loss import reflective_contrastive_loss
from .prompts import Prompt

RETRIEVER_FILE = "retriever.json"


@dataclass
class TableView:
    """The database as training sees it: ids, concepts and the frozen image tower's embeddings."""

    ids: list[str]
    concepts: list[str]
    embeddings: torch.Tensor  # [N, d] normalised

    def __post_init__(self):
        self.row_of = {i: r for r, i in enumerate(self.ids)}
        self.rows_of_concept: dict[str, list[int]] = {}
        for r, c in enumerate(self.concepts):
            self.rows_of_concept.setdefault(c, []).append(r)


def text_tower_parameters(model) -> list[torch.nn.Parameter]:
    """The parameters of open_clip's text tower (the image tower and the temperature stay frozen)."""
    names = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
    params = []
    for name, p in model.named_parameters():
        trainable = name.startswith(names)
        p.requires_grad_(trainable)
        if trainable:
            params.append(p)
    return params


def train_retriever(
    clip: ClipBundle,
    prompts: Sequence[Prompt],
    table: TableView,
    negatives_of: dict[str, list[str]],  # prompt id -> negative image ids (empty for the baseline)
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    mask_same_concept: bool = True,
    image_to_text: bool = False,
    drop_positive_negatives: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model = clip.model
    params = text_tower_parameters(model)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    usable = [p for p in prompts if table.rows_of_concept.get(p.concept)]
    by_concept: dict[str, list[Prompt]] = {}
    for p in usable:
        by_concept.setdefault(p.concept, []).append(p)
    concepts = sorted(by_concept)
    batch = min(batch_size, len(concepts))
    if batch < 2:
        raise ValueError("retriever training needs prompts of at least two concepts with database images")
    max_neg = max((len(v) for v in negatives_of.values()), default=0)
    scale = model.logit_scale.exp().detach()
    model.train()
    losses = []
    for step in range(steps):
        chosen = rng.sample(concepts, batch)  # one prompt per concept per batch
        items = [rng.choice(by_concept[c]) for c in chosen]
        pos_rows = [rng.choice(table.rows_of_concept[p.concept]) for p in items]
        images = table.embeddings[pos_rows]
        negatives = mask = None
        if max_neg:
            neg_rows = torch.zeros(batch, max_neg, dtype=torch.long)
            mask = torch.zeros(batch, max_neg, dtype=torch.bool)
            for b, (p, pos) in enumerate(zip(items, pos_rows)):
                for j, nid in enumerate(negatives_of.get(p.prompt_id, [])):
                    row = table.row_of.get(nid)
                    if row is None or (drop_positive_negatives and row == pos):
                        continue  # deleted from the table, or the pair's own positive (paper-literal policy)
                    neg_rows[b, j], mask[b, j] = row, True
            negatives = table.embeddings[neg_rows]
        same = None
        if mask_same_concept:
            cs = [p.concept for p in items]
            same = torch.tensor([[a == b for b in cs] for a in cs])
        tokens = clip.tokenizer([p.prompt for p in items])
        text = F.normalize(model.encode_text(tokens), dim=-1)
        loss = reflective_contrastive_loss(text, images, scale, negatives, mask, same, image_to_text)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if on_step:
            on_step(step, losses[-1])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return losses


@torch.no_grad()
def validate(clip: ClipBundle, prompts: Sequence[Prompt], table: TableView) -> dict:
    """Text->image concept accuracy of each prompt against the whole table, by generator split."""
    out = {}
    for split in ("known", "novel"):
        sel = [p for p in prompts if p.generator_split == split]
        if not sel:
            continue
        text = clip.embed_texts([p.prompt for p in sel])
        out[split] = {**retrieval_accuracy(text, [p.concept for p in sel], table.embeddings, table.concepts),
                      "queries": len(sel)}  # fmt: skip
    return out


def save_retriever(clip: ClipBundle, base_folder: Path, folder: Path, info: dict) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_NAME).write_text((base_folder / CONFIG_NAME).read_text())
    model_id = save_clip(clip.model, folder).replace("demo-clip:", "retriever:")
    (folder / RETRIEVER_FILE).write_text(json.dumps({**info, "model_id": model_id}, indent=2))
    return model_id


def load_retriever(folder: Path, device: str = "cpu") -> tuple[ClipBundle, dict]:
    info_path = folder / RETRIEVER_FILE
    if not info_path.is_file():
        raise FileNotFoundError(f"no {RETRIEVER_FILE} in {folder}: materialize the retriever first")
    bundle = load_clip(folder, device)
    info = json.loads(info_path.read_text())
    bundle.model_id = info["model_id"]
    return bundle, info


def negatives_by_prompt(negatives_rows: list[dict]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in sorted(negatives_rows, key=lambda r: (r["prompt_id"], r["seed"], r["rank"])):
        ids = out.setdefault(r["prompt_id"], [])
        if r["negative_id"] not in ids:
            ids.append(r["negative_id"])
    return out


def table_view(rows) -> TableView:
    emb = torch.from_numpy(np.stack(rows["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32))
    return TableView(rows["id"].to_pylist(), rows["concept"].to_pylist(), F.normalize(emb, dim=-1))


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, round(time.perf_counter() - start, 2)


def build_retriever(cfg, base_folder: Path, prompts: Sequence[Prompt], rows, table_version: int,
                    negatives_rows: list[dict] | None, out_folder: Path, plot: Path, title: str) -> dict:  # fmt: skip
    """Train one retriever (reflective when ``negatives_rows`` is given, the contrastive baseline when None),
    validate it next to the zero-shot base on validation prompts, save it. Returns its report."""
    from .plots import line_plot

    r = cfg.retriever
    table = table_view(rows)
    train = [p for p in prompts if p.retriever_split == "train"]
    val = [p for p in prompts if p.retriever_split == "val"]
    base = load_clip(base_folder, cfg.device)
    zero_shot = validate(base, val, table)
    negatives_of = negatives_by_prompt(negatives_rows) if negatives_rows is not None else {}
    drop_positive = cfg.mining.policy == "exclude_positive"
    losses, seconds = timed(train_retriever, base, train, table, negatives_of, r.steps, r.batch_size, r.lr, r.seed,
                            r.mask_same_concept, r.image_to_text, drop_positive)  # fmt: skip
    tuned = validate(base, val, table)
    line_plot(losses, plot, f"{title}: self-reflective contrastive loss" if negatives_rows is not None
              else f"{title}: contrastive loss (no reflective negatives)", "step", "loss")  # fmt: skip
    info = {"reflective": negatives_rows is not None, "train_prompts": len(train), "val_prompts": len(val),
            "negatives_per_prompt": max((len(v) for v in negatives_of.values()), default=0),
            "table_version": table_version, "base_model_id": base.model_id, "train_seconds": seconds,
            "final_loss": losses[-1], "losses": losses, "validation": tuned, "validation_zero_shot": zero_shot,
            "settings": r.model_dump(mode="json"), "negative_policy": cfg.mining.policy}  # fmt: skip
    info["model_id"] = save_retriever(base, base_folder, out_folder, info)
    return info

"""Stage 4 kernel: self-reflective contrastive fine-tuning of the base CLIP (and, with the reflective term
off, the plain contrastive baseline, from the same code, data, steps and settings).

Trainable part: the text tower (the image tower stays frozen, so the LanceDB table stays valid and the
image features come from it instead of being recomputed). Training pairs are (prompt of a retriever-train
concept, one database image of that concept); each prompt's reflective negatives are the real images its
G(T) samples were nearest to.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from realrag_core.clip.bundle import ClipBundle, adamw, load_clip, retrieval_accuracy
from realrag_core.clip.loss import reflective_contrastive_loss
from realrag_core.data.prompts import Prompt


@dataclass
class TableView:
    """The database as training sees it: ids, concepts and the frozen image tower's embeddings."""

    ids: list[str]
    concepts: list[str]
    embeddings: torch.Tensor  # [N, d] normalised
    pixels: torch.Tensor | None = None  # [N, 3, H, W] preprocessed, needed when the image tower trains

    def reembedded(self, clip: ClipBundle, batch_size: int = 256) -> "TableView":
        """The same rows embedded by another image tower (a retriever whose image tower was trained)."""
        if self.pixels is None:
            raise ValueError("re-embedding the table needs its pixels (load_pixels)")
        emb = torch.cat(
            [clip.embed_pixels(self.pixels[i : i + batch_size]) for i in range(0, len(self.ids), batch_size)]
        )
        return TableView(self.ids, self.concepts, emb, self.pixels)

    def __post_init__(self):
        self.row_of = {i: r for r, i in enumerate(self.ids)}
        self.rows_of_concept: dict[str, list[int]] = {}
        for r, c in enumerate(self.concepts):
            self.rows_of_concept.setdefault(c, []).append(r)


TRAINABLE_PREFIXES = {
    # open_clip CLIP parameter names; the temperature (logit_scale) always stays as the base model learned it
    "text": ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection"),
    "text_head": ("ln_final", "text_projection"),
    "both": ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection", "visual"),
}


def trainable_parameters(model, trainable: str) -> list[torch.nn.Parameter]:
    """Unfreeze the named part of the model (``text``, ``text_head`` or ``both``), freeze the rest."""
    if trainable not in TRAINABLE_PREFIXES:
        raise ValueError(f"trainable must be one of {sorted(TRAINABLE_PREFIXES)}, not {trainable!r}")
    params = []
    for name, p in model.named_parameters():
        on = name.startswith(TRAINABLE_PREFIXES[trainable])
        p.requires_grad_(on)
        if on:
            params.append(p)
    return params


def load_pixels(paths: Sequence[str], clip: ClipBundle) -> torch.Tensor:
    """The table's images through the model's evaluation transform (what the image tower sees)."""
    from realrag_core.embed.table import open_row_image

    return torch.stack([clip.preprocess(open_row_image(p)) for p in paths])


def train_retriever(
    clip: ClipBundle,
    prompts: Sequence[Prompt],
    table: TableView,
    negatives_of: dict[str, list[str]],  # prompt id -> negative image ids (empty for the baseline)
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    mask_same_concept: bool = True,
    image_to_text: bool = False,
    drop_positive_negatives: bool = True,
    on_step: Callable[[int, float], None] | None = None,
    trainable: str = "text",
    used_vocabulary: bool = True,
) -> list[float]:
    """``trainable="text"`` or ``"text_head"``: image features come from the table (frozen tower); ``"both"``:
    positives and negatives go through the image tower at every step (``table.pixels`` needed).

    ``used_vocabulary``: the token embedding trains as the rows of the tokens the training prompts use. The same
    update as the full table's: AdamW here has no weight decay, so a row whose gradient is always zero never moves;
    but the full table's gradient is a 49,408 x width tensor zero-filled at every step, about half of a step on the
    demo's CPU (``tests/test_retriever.py`` checks both give the same weights)."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model = clip.model
    if trainable == "both" and table.pixels is None:
        raise ValueError("training the image tower needs the table's pixels (load_pixels)")
    params = trainable_parameters(model, trainable)

    def embed(rows: torch.Tensor) -> torch.Tensor:
        if trainable != "both":  # the image tower is frozen: its features come from the table
            return table.embeddings[rows]
        flat = rows.reshape(-1)
        return F.normalize(model.encode_image(table.pixels[flat]), dim=-1).reshape(*rows.shape, -1)

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
    texts = sorted({p.prompt for p in usable})  # tokenized once, not at every step
    token_row = {t: i for i, t in enumerate(texts)}
    all_tokens = clip.tokenizer(texts)
    concept_index = {c: i for i, c in enumerate(concepts)}
    full = model.token_embedding
    swap = used_vocabulary and full.weight.requires_grad
    if swap:
        vocab = torch.unique(all_tokens)
        used = torch.nn.Embedding.from_pretrained(full.weight.detach()[vocab].clone(), freeze=False)
        remap = torch.full((full.num_embeddings,), -1, dtype=torch.long)
        remap[vocab] = torch.arange(len(vocab))
        all_tokens = remap[all_tokens]
        params = [p for p in params if p is not full.weight] + [used.weight]
        model.token_embedding = used

    def full_table() -> None:  # the model as everyone else sees it (validation, checkpoints, the caller)
        if swap:
            with torch.no_grad():
                full.weight[vocab] = used.weight
            model.token_embedding = full

    optimizer = adamw(params, lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for step in range(steps):
        chosen = rng.sample(concepts, batch)  # one prompt per concept per batch
        items = [rng.choice(by_concept[c]) for c in chosen]
        pos_rows = [rng.choice(table.rows_of_concept[p.concept]) for p in items]
        images = embed(torch.tensor(pos_rows))
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
            negatives = embed(neg_rows)
        same = None
        if mask_same_concept:
            cs = torch.tensor([concept_index[p.concept] for p in items])
            same = cs[:, None] == cs[None, :]
        tokens = all_tokens[[token_row[p.prompt] for p in items]]
        text = F.normalize(model.encode_text(tokens), dim=-1)
        loss = reflective_contrastive_loss(
            text, images, scale, negatives=negatives, negative_mask=mask, same_concept=same, image_to_text=image_to_text
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if on_step:
            full_table()
            on_step(step, losses[-1])
            model.token_embedding = used if swap else full
    full_table()
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
        out[split] = {
            **retrieval_accuracy(text, [p.concept for p in sel], table.embeddings, table.concepts),
            "queries": len(sel),
        }
    return out


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


def validation_score(validation: dict) -> tuple[float, float]:
    """One number to choose by: top-1 (then top-5) concept accuracy pooled over known and novel prompts."""
    n = sum(m["queries"] for m in validation.values())
    if not n:
        return 0.0, 0.0
    return (
        sum(m["top1"] * m["queries"] for m in validation.values()) / n,
        sum(m["top5"] * m["queries"] for m in validation.values()) / n,
    )


def fit_one(
    cfg,
    base_folder: Path,
    train: Sequence[Prompt],
    val: Sequence[Prompt],
    *,
    table: TableView,
    negatives_of: dict[str, list[str]],
    drop_positive: bool,
    lr: float,
    seed: int,
    trainable: str | None = None,
) -> tuple[ClipBundle, dict]:
    """Fine-tune a fresh copy of the base CLIP with one learning rate and seed; validate it (against the table
    as its own image tower embeds it)."""
    r = cfg.retriever
    trainable = trainable or r.trainable
    model = load_clip(base_folder, cfg.device, cfg.precision)
    best: dict = {}

    def checkpoint(step: int, loss: float) -> None:  # early stopping: the best validated step so far
        if (step + 1) % r.validate_every == 0 or step + 1 == r.steps:
            model.model.eval()
            score = validation_score(validate(model, val, table))
            model.model.train()
            if not best or score > best["score"]:
                state = {k: v.detach().clone() for k, v in model.model.state_dict().items()}
                best.update(score=score, step=step + 1, state=state)

    early = r.validate_every is not None and trainable != "both" and bool(val)
    losses, seconds = timed(
        train_retriever,
        model,
        train,
        table,
        negatives_of,
        steps=r.steps,
        batch_size=r.batch_size,
        lr=lr,
        seed=seed,
        mask_same_concept=r.mask_same_concept,
        image_to_text=r.image_to_text,
        drop_positive_negatives=drop_positive,
        on_step=checkpoint if early else None,
        trainable=trainable,
    )
    if early:
        model.model.load_state_dict(best["state"])
    validation = validate(model, val, table.reembedded(model) if trainable == "both" else table)
    return model, {
        "lr": lr,
        "seed": seed,
        "train_seconds": seconds,
        "final_loss": losses[-1],
        "losses": losses,
        "kept_step": best["step"] if early else r.steps,
        "validation": validation,
        "score": validation_score(validation)[0],
    }


def mean_validation(runs: Sequence[dict]) -> dict:
    """Per split: the mean over training seeds of top-1/top-5, with the per-seed range."""
    out = {}
    for split in sorted({s for run in runs for s in run["validation"]}):
        vals = [run["validation"][split] for run in runs if split in run["validation"]]
        out[split] = {
            "top1": float(np.mean([v["top1"] for v in vals])),
            "top5": float(np.mean([v["top5"] for v in vals])),
            "mrr": float(np.mean([v.get("mrr", 0.0) for v in vals])),
            "top1_min": min(v["top1"] for v in vals),
            "top1_max": max(v["top1"] for v in vals),
            "queries": vals[0]["queries"],
            "seeds": len(vals),
        }
    return out

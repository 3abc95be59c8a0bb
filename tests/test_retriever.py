"""Stage 4 kernel on the smoke world: what trains, what the baseline shares, that it learns."""

import numpy as np
import pytest
import torch

from realrag_core.clip_backbone import load_clip
from realrag_core.prompts import Prompt
from realrag_core.retriever import TableView, negatives_by_prompt, train_retriever, validate
from realrag_core.sources import iter_records, prepare_source


@pytest.fixture
def world(smoke_cfg, tmp_path):
    """A briefly pre-trained smoke CLIP, a table of its database embeddings, and one prompt per concept."""
    prepare_source(smoke_cfg.source)
    from realrag_core.clip_pretrain import train_or_reuse, load_images

    records = list(iter_records(smoke_cfg.source))
    pre = [r for r in records if r.style == "outline"]
    train_or_reuse(smoke_cfg.clip.architecture, smoke_cfg.clip.train, 0, pre, tmp_path / "clip", tmp_path / "p.png", "t")
    clip = load_clip(tmp_path / "clip")
    db = [r for r in records if r.style in ("filled", "shadow", "striped")]
    images, kept = load_images(db)
    table = TableView([f"{r.concept}/{r.style}" for r in kept], [r.concept for r in kept], clip.embed_images(images))
    concepts = sorted({r.concept for r in kept})
    prompts = [Prompt(f"p{i}", f"a {c}", c, "known" if i % 3 else "novel", "train", "a {concept}")
               for i, c in enumerate(concepts)]  # fmt: skip
    return tmp_path / "clip", table, prompts


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_only_the_text_tower_changes_and_it_learns(world):
    folder, table, prompts = world
    clip = load_clip(folder)
    before = _snapshot(clip.model)
    acc_before = validate(clip, prompts, table)
    losses = train_retriever(clip, prompts, table, {}, steps=60, batch_size=8, lr=2e-3, seed=0)
    after = _snapshot(clip.model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(not k.startswith("visual.") and k != "logit_scale" for k in changed)
    assert any(k.startswith("transformer.") for k in changed)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    acc_after = validate(clip, prompts, table)
    mean = lambda acc: np.mean([m["top1"] for m in acc.values()])  # noqa: E731
    assert mean(acc_after) > mean(acc_before)  # fits its training prompts (validation is a separate question)


def test_baseline_is_the_same_code_with_the_reflective_term_off(world):
    folder, table, prompts = world
    a, b, c = load_clip(folder), load_clip(folder), load_clip(folder)
    la = train_retriever(a, prompts, table, {}, 5, 8, 1e-3, seed=3)
    lb = train_retriever(b, prompts, table, {p.prompt_id: [] for p in prompts}, 5, 8, 1e-3, seed=3)
    assert la == lb
    negs = {p.prompt_id: [table.ids[(i * 5 + 1) % len(table.ids)]] for i, p in enumerate(prompts)}
    lc = train_retriever(c, prompts, table, negs, 5, 8, 1e-3, seed=3)
    assert lc != la and lc[0] > la[0]  # extra negatives in the denominator raise the loss


def test_negatives_by_prompt_orders_and_deduplicates():
    rows = [{"prompt_id": "p", "seed": 1, "rank": 1, "negative_id": "b"},
            {"prompt_id": "p", "seed": 0, "rank": 2, "negative_id": "c"},
            {"prompt_id": "p", "seed": 0, "rank": 1, "negative_id": "b"},
            {"prompt_id": "q", "seed": 0, "rank": 1, "negative_id": "a"}]  # fmt: skip
    assert negatives_by_prompt(rows) == {"p": ["b", "c"], "q": ["a"]}

import json

import open_clip
import pytest
import torch

from realrag_core.clip_backbone import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    adamw,
    create_untrained,
    load_clip,
    retrieval_accuracy,
    save_clip,
    train_clip,
)
from realrag_core.sources import iter_records, prepare_source


def _pretrain_data(cfg):
    prepare_source(cfg.source)
    records = [r for r in iter_records(cfg.source) if r.style in cfg.world.styles.clip_pretrain]
    from PIL import Image

    return [Image.open(r.path).convert("RGB") for r in records], [r.concept for r in records]


def test_model_comes_from_open_clip_factory_config(smoke_cfg, tmp_path):
    model, _, _, tokenizer = create_untrained(tmp_path, smoke_cfg.clip.architecture, seed=0)
    assert isinstance(model, open_clip.CLIP)
    saved = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert saved["model_cfg"]["vision_cfg"]["image_size"] == smoke_cfg.clip.architecture.image_size
    assert tokenizer(["a red circle"]).shape == (1, smoke_cfg.clip.architecture.context_length)


def test_training_lowers_clip_loss_and_is_deterministic(smoke_cfg, tmp_path):
    images, concepts = _pretrain_data(smoke_cfg)
    train = smoke_cfg.clip.train.model_copy(update={"steps": 25})
    runs = []
    for i in range(2):
        model, train_tf, _, tok = create_untrained(tmp_path / f"m{i}", smoke_cfg.clip.architecture, seed=0)
        runs.append(train_clip(model, tok, train_tf, images, concepts, train, seed=0))
    assert runs[0] == runs[1]
    assert sum(runs[0][-5:]) / 5 < sum(runs[0][:5]) / 5


def test_save_and_load_through_local_dir_round_trips(smoke_cfg, tmp_path):
    images, concepts = _pretrain_data(smoke_cfg)
    model, train_tf, eval_tf, tok = create_untrained(tmp_path, smoke_cfg.clip.architecture, seed=0)
    train_clip(model, tok, train_tf, images, concepts, smoke_cfg.clip.train.model_copy(update={"steps": 3}), 0)
    model_id = save_clip(model, tmp_path)
    assert (tmp_path / WEIGHTS_NAME).is_file() and model_id.startswith("demo-clip:")
    bundle = load_clip(tmp_path)
    assert bundle.model_id == model_id
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model.encode_image(torch.stack([eval_tf(images[0])])), dim=-1)
    assert torch.allclose(bundle.embed_images(images[:1]), expected, atol=1e-6)
    assert torch.allclose(bundle.embed_texts(["a red circle"]).norm(dim=-1), torch.ones(1))


def test_retrieval_accuracy_counts_concept_hits():
    images = torch.eye(3)
    texts = torch.tensor([[1.0, 0, 0], [0, 0.2, 1.0]])
    acc = retrieval_accuracy(texts, ["a", "b"], images, ["a", "b", "c"], ks=(1, 2))
    assert (acc["top1"], acc["top2"]) == (0.5, 1.0)
    assert acc["top1_lo"] < 0.5 < acc["top1_hi"] and acc["top2_hi"] == 1.0 and acc["top2_lo"] < 1.0
    assert acc["mrr"] == pytest.approx((1 / 1 + 1 / 2) / 2)  # "b" is found at rank 2, behind "c"
    absent = retrieval_accuracy(texts, ["a", "z"], images, ["a", "b", "c"], ks=(1,))
    assert absent["mrr"] == pytest.approx(0.5)  # a concept with no image in the table counts 0


def test_untrained_model_ignores_weights_left_in_the_folder(smoke_cfg, tmp_path):
    """Retraining must start from the seed's random init, not from an earlier run's weights."""
    first, *_ = create_untrained(tmp_path, smoke_cfg.clip.architecture, seed=0)
    with torch.no_grad():
        for p in first.parameters():
            p.add_(1.0)
    save_clip(first, tmp_path)
    fresh, *_ = create_untrained(tmp_path, smoke_cfg.clip.architecture, seed=0)
    again, *_ = create_untrained(tmp_path / "other", smoke_cfg.clip.architecture, seed=0)
    for a, b in zip(fresh.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    assert not torch.equal(fresh.state_dict()["positional_embedding"], first.state_dict()["positional_embedding"])


def test_precision_embeds_under_autocast_and_stays_close_to_float32(smoke_cfg, tmp_path):
    from realrag_core.synthetic_world import draw_concept

    model, *_ = create_untrained(tmp_path / "c", smoke_cfg.clip.architecture, seed=0)
    save_clip(model, tmp_path / "c")
    full, half = load_clip(tmp_path / "c"), load_clip(tmp_path / "c", precision="bfloat16")
    images = [draw_concept(c, s, "filled", 32) for c in ("red", "blue") for s in ("circle", "star")]
    texts = ["a red circle", "a blue star"]
    seen = []
    encode = half.model.encode_image
    half.model.encode_image = lambda x: seen.append(torch.is_autocast_cpu_enabled()) or encode(x)
    a, b = full.embed_images(images), half.embed_images(images)
    assert seen == [True] and not torch.is_autocast_cpu_enabled()
    assert a.dtype == b.dtype == torch.float32 and not torch.equal(a, b)  # bf16 arithmetic, float32 out
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.98
    assert torch.nn.functional.cosine_similarity(full.embed_texts(texts), half.embed_texts(texts)).min() > 0.98


def test_adamw_is_fused_on_cpu_and_makes_the_plain_adamw_update():
    def run(make):
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(300, 16)), torch.nn.Parameter(torch.randn(16))]
        opt = make(params)
        g = torch.Generator().manual_seed(1)
        for _ in range(5):
            for p in params:
                p.grad = torch.randn(p.shape, generator=g)
            opt.step()
        return opt, params

    fused, after = run(lambda ps: adamw(ps, lr=1e-2, weight_decay=0.1))
    _, plain = run(lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1, foreach=False))
    assert fused.defaults["fused"] is True
    assert not torch.equal(after[0], torch.randn(300, 16, generator=torch.Generator().manual_seed(0)))
    for a, b in zip(after, plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

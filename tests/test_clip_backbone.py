import json

import open_clip
import pytest
import torch

from realrag_core.clip.bundle import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    adamw,
    create_untrained,
    load_clip,
    retrieval_accuracy,
    save_clip,
    train_clip,
)
from realrag_core.data.sources.registry import iter_records, prepare_source


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
        runs.append(train_clip(model, tok, train_tf, images=images, concepts=concepts, cfg=train, seed=0))
    assert runs[0] == runs[1]
    assert sum(runs[0][-5:]) / 5 < sum(runs[0][:5]) / 5


def test_save_and_load_through_local_dir_round_trips(smoke_cfg, tmp_path):
    images, concepts = _pretrain_data(smoke_cfg)
    model, train_tf, eval_tf, tok = create_untrained(tmp_path, smoke_cfg.clip.architecture, seed=0)
    train_clip(
        model,
        tok,
        train_tf,
        images=images,
        concepts=concepts,
        cfg=smoke_cfg.clip.train.model_copy(update={"steps": 3}),
        seed=0,
    )
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
    from realrag_core.data.sources.synthetic import draw_concept

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


def _outside_world_profile(smoke_data, tmp_path):
    """The smoke world shrunk to 8 of its 12 concepts, 2 of the other 4 as selection concepts, and the database
    and reference styles' images of the remaining 2 allowed into pre-training."""
    import copy

    from realrag_core.config.loading import parse_config
    from realrag_core.data.world import compute_world

    data = copy.deepcopy(smoke_data)
    data["world"].update(num_concepts=8, selection_concepts=2)
    data["world"]["styles"]["outside_world"] = ["filled", "shadow", "striped", "dotted"]
    cfg = parse_config(data, tmp_path)
    prepare_source(cfg.source)
    records = list(iter_records(cfg.source))
    return data, cfg, records, compute_world(records, cfg.world)


def test_pre_training_data_never_holds_held_out_images(smoke_data, tmp_path):
    """Base CLIP: every pre-training-style image, and database/reference-style images only of concepts outside
    both the world and the selection. Judge: everything but the reference style's images of those concepts."""
    from realrag_core.clip.demo_pretrain import base_clip_records, judge_records

    _, cfg, records, world = _outside_world_profile(smoke_data, tmp_path)
    held = set(world.concepts) | set(world.selection)
    outside = {r.concept for r in records} - held
    assert len(world.selection) == 2 and len(outside) == 2
    clip = base_clip_records(cfg, world, records)
    assert {r.style for r in clip if r.concept in held} == {"outline"}
    assert {r.concept for r in clip if r.style != "outline"} == outside
    assert {r.style for r in clip if r.concept in outside} == {"outline", "filled", "shadow", "striped", "dotted"}
    judge = judge_records(cfg, world, records)
    assert not [r for r in judge if r.style == "dotted" and r.concept in held]
    assert len(judge) == len(records) - sum(r.style == "dotted" and r.concept in held for r in records)


def test_shipped_base_clip_and_judge_are_taken_only_for_their_recipe(smoke_data, tmp_path):
    """Weights made by the same recipe on the same data are copied, not trained; another recipe refuses them and
    trains. The reports carry the selection score and, for the judge, its held-out ceiling."""
    import copy

    import json

    from realrag_core.clip.demo_pretrain import CEILING_FILE, build_demo_clip, build_judge, read_judge_ceiling
    from realrag_core.config.loading import parse_config

    data, cfg, records, world = _outside_world_profile(smoke_data, tmp_path)
    made = build_demo_clip(cfg, world, tmp_path / "made_clip", tmp_path)
    judged = build_judge(cfg, world, tmp_path / "made_judge", tmp_path)
    assert made["source"] == judged["source"] == "trained" and made["database_world_images_trained"] == 0
    assert judged["reference_world_images_trained"] == 0 and judged["ceiling_split"] == "reference"
    assert made["selection"]["queries"] == 2 and judged["selection"]["n"] == 2
    assert judged["ceiling"]["reference/known"]["n"] + judged["ceiling"]["reference/novel"]["n"] == 8
    # later stages read the ceiling from beside the weights, never from the judge's report
    assert read_judge_ceiling(tmp_path / "made_judge") == ("reference", judged["ceiling"])
    assert json.loads((tmp_path / "made_judge" / CEILING_FILE).read_text())["model_id"] == judged["model_id"]
    assert read_judge_ceiling(tmp_path) == ("database", {})  # a folder without the record
    shipped = copy.deepcopy(data)
    shipped["clip"]["shipped_weights"] = str(tmp_path / "made_clip")
    shipped["judge"]["shipped_weights"] = str(tmp_path / "made_judge")
    used = build_demo_clip(parse_config(shipped, tmp_path), world, tmp_path / "run_clip", tmp_path)
    used_judge = build_judge(parse_config(shipped, tmp_path), world, tmp_path / "run_judge", tmp_path)
    assert used["source"] == used_judge["source"] == "shipped"
    assert used["model_id"] == made["model_id"] and used_judge["model_id"] == judged["model_id"]
    assert used["zero_shot"] == made["zero_shot"]
    shipped["clip"]["train"]["steps"] = 11
    refused = build_demo_clip(parse_config(shipped, tmp_path), world, tmp_path / "other_clip", tmp_path)
    assert refused["source"] == "trained" and refused["model_id"] != made["model_id"]


def test_colour_jitter_keeps_hue_is_deterministic_and_leaves_old_keys(smoke_cfg, tmp_path):
    import colorsys
    import warnings

    import numpy as np
    from PIL import Image

    from realrag_core.config.clip import ClipTrainConfig

    plain = ClipTrainConfig()
    jitter = ClipTrainConfig(color_jitter=(0.4, 0.4, 0.4), color_jitter_prob=1.0)
    # weights made before the setting existed keep their training key while it holds its default
    assert plain.key_dump() == ClipTrainConfig(color_jitter=(0.0, 0.0, 0.0)).key_dump()
    assert "color_jitter" not in plain.key_dump() and jitter.key_dump()["color_jitter"] == [0.4, 0.4, 0.4]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # open_clip's spurious "unused augmentation" warning is filtered, nothing else
        _, tf, _, _ = create_untrained(tmp_path / "j", smoke_cfg.clip.architecture, 0, jitter.open_clip_aug_cfg())
    _, tf_plain, _, _ = create_untrained(tmp_path / "p", smoke_cfg.clip.architecture, 0, plain.open_clip_aug_cfg())
    red = Image.new("RGB", (64, 64), (200, 40, 40))

    def hue_and_value(t):
        rgb = ((t * 0.5 + 0.5).clamp(0, 1).mean(dim=(1, 2))).tolist()
        h, _, v = colorsys.rgb_to_hsv(*rgb)
        return h, v

    torch.manual_seed(0)
    seen = [hue_and_value(tf(red)) for _ in range(8)]
    torch.manual_seed(0)
    base_h, base_v = hue_and_value(tf_plain(red))
    assert all(abs(h - base_h) < 0.02 or abs(h - base_h) > 0.98 for h, _ in seen)  # still red
    assert np.ptp([v for _, v in seen]) > 0.05 and any(abs(v - base_v) > 0.02 for _, v in seen)  # brightness moved
    images, concepts = _pretrain_data(smoke_cfg)
    train = smoke_cfg.clip.train.model_copy(
        update={"steps": 6, "color_jitter": (0.3, 0.3, 0.3), "color_jitter_prob": 0.5}
    )
    runs = []
    for i in range(2):
        model, train_tf, _, tok = create_untrained(
            tmp_path / f"m{i}", smoke_cfg.clip.architecture, 0, train.open_clip_aug_cfg()
        )
        runs.append(train_clip(model, tok, train_tf, images=images, concepts=concepts, cfg=train, seed=0))
    assert runs[0] == runs[1]


def test_weight_averaging_keeps_the_mean_of_the_late_steps_and_leaves_the_path(smoke_cfg, tmp_path):
    from realrag_core.config.clip import ClipTrainConfig

    # weights made before the setting existed keep their training key
    assert "average_from" not in ClipTrainConfig().key_dump()
    assert ClipTrainConfig(average_from=0.5).key_dump()["average_from"] == 0.5
    with pytest.raises(ValueError):
        ClipTrainConfig(average_from=1.0)
    images, concepts = _pretrain_data(smoke_cfg)
    plain = smoke_cfg.clip.train.model_copy(update={"steps": 6})
    averaged = plain.model_copy(update={"average_from": 0.5})
    runs = {}
    for name, train in (("plain", plain), ("averaged", averaged)):
        model, train_tf, _, tok = create_untrained(tmp_path / name, smoke_cfg.clip.architecture, seed=0)
        snapshots = []

        def keep(step, loss, model=model, snapshots=snapshots):
            snapshots.append({k: v.detach().clone() for k, v in model.named_parameters()})

        losses = train_clip(model, tok, train_tf, images=images, concepts=concepts, cfg=train, seed=0, on_step=keep)
        runs[name] = (losses, snapshots, {k: v.detach().clone() for k, v in model.named_parameters()})
    (plain_losses, plain_steps, plain_final), (avg_losses, avg_steps, avg_final) = runs["plain"], runs["averaged"]
    assert plain_losses == avg_losses  # averaging watches the training, it does not change it
    for k, v in plain_final.items():
        assert torch.equal(v, plain_steps[-1][k])  # without averaging the last step is kept
        mean = torch.stack([s[k] for s in avg_steps[3:]]).mean(0)  # steps 3, 4, 5 of 6
        torch.testing.assert_close(avg_final[k], mean, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(avg_final[k], avg_steps[-1][k]) for k in avg_final)


def test_image_pairs_put_two_drawings_of_each_concept_in_a_batch_and_leave_old_keys(smoke_cfg, tmp_path):
    from realrag_core.config.clip import ClipTrainConfig

    assert "image_pair_weight" not in ClipTrainConfig().key_dump()
    assert ClipTrainConfig(image_pair_weight=1.0).key_dump()["image_pair_weight"] == 1.0
    from PIL import Image

    prepare_source(smoke_cfg.source)
    records = list(iter_records(smoke_cfg.source))  # every style: one image per concept and style
    images, concepts = [Image.open(r.path).convert("RGB") for r in records], [r.concept for r in records]
    # give one concept a single image to see the fallback
    lonely = concepts[0]
    keep = [i for i, c in enumerate(concepts) if c != lonely or i == concepts.index(lonely)]
    images, concepts = [images[i] for i in keep], [concepts[i] for i in keep]
    assert concepts.count(lonely) == 1 and max(concepts.count(c) for c in set(concepts)) > 1
    train = smoke_cfg.clip.train.model_copy(update={"steps": 4, "hflip": 0.0, "batch_size": 8})
    paired = train.model_copy(update={"image_pair_weight": 1.0})
    runs = {}
    for name, recipe in (("plain", train), ("paired", paired), ("paired_again", paired)):
        model, train_tf, _, tok = create_untrained(tmp_path / name, smoke_cfg.clip.architecture, seed=0)
        seen, steps = [], []

        def transform(image, train_tf=train_tf, seen=seen):
            seen.append(images.index(image))
            return train_tf(image)

        def step_done(step, loss, seen=seen, steps=steps):
            steps.append(list(seen))
            seen.clear()

        losses = train_clip(
            model, tok, transform, images=images, concepts=concepts, cfg=recipe, seed=0, on_step=step_done
        )
        runs[name] = (losses, steps)
    plain_losses, plain_steps = runs["plain"]
    assert all(len(s) == 8 and len({concepts[i] for i in s}) == 8 for s in plain_steps)
    losses, steps = runs["paired"]
    assert runs["paired_again"][0] == losses  # deterministic
    assert losses != plain_losses
    saw_lonely = False
    for s in steps:
        assert len(s) == 8  # as many images per batch as without pairs
        firsts, seconds = s[0::2], s[1::2]
        assert len({concepts[i] for i in firsts}) == 4  # four concepts, each once
        for a, b in zip(firsts, seconds):
            assert concepts[a] == concepts[b]
            if concepts[a] == lonely:
                saw_lonely = True
                assert a == b  # its only image, augmented twice
            else:
                assert a != b  # two artists' drawings
    assert all(torch.isfinite(torch.tensor(losses)))
    assert saw_lonely  # drawn in one of the four steps (fixed seed)


def test_a_resnet_vision_tower_comes_from_open_clip_and_averaging_recomputes_its_batch_norm(smoke_cfg, tmp_path):
    from open_clip.modified_resnet import ModifiedResNet

    from realrag_core.config.clip import ClipArchitecture

    with pytest.raises(ValueError, match="multiple of 32"):
        ClipArchitecture(vision_layers=(1, 1, 1, 1), image_size=48)
    with pytest.raises(ValueError, match="needs a block"):
        ClipArchitecture(vision_layers=(1, 0, 1, 1), image_size=32)
    vit = ClipArchitecture()
    assert vit.open_clip_model_cfg()["vision_cfg"]["layers"] == 4  # the ViT's saved config is as before
    arch = smoke_cfg.clip.architecture.model_validate(
        smoke_cfg.clip.architecture.model_dump() | {"vision_layers": [1, 1, 1, 1], "vision_width": 16, "image_size": 32}
    )
    assert arch.vision_layers == (1, 1, 1, 1)
    images, concepts = _pretrain_data(smoke_cfg)
    train = smoke_cfg.clip.train.model_copy(update={"steps": 6, "average_from": 0.5})
    runs = []
    for i in range(2):
        model, train_tf, _, tok = create_untrained(tmp_path / f"m{i}", arch, seed=0)
        assert isinstance(model.visual, ModifiedResNet)
        runs.append((train_clip(model, tok, train_tf, images=images, concepts=concepts, cfg=train, seed=0), model))
    assert runs[0][0] == runs[1][0]  # deterministic
    norms = [m for m in runs[0][1].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms
    for a, b in zip(norms, [m for m in runs[1][1].modules() if isinstance(m, torch.nn.BatchNorm2d)]):
        # recomputed for the averaged weights: not the untouched statistics the average's copy was made with
        assert not torch.allclose(a.running_mean, torch.zeros_like(a.running_mean))
        assert not torch.allclose(a.running_var, torch.ones_like(a.running_var))
        assert torch.equal(a.running_mean, b.running_mean)
    assert not runs[0][1].training
    saved = save_clip(runs[0][1], tmp_path / "m0")
    bundle = load_clip(tmp_path / "m0")  # the local-dir loader rebuilds the ResNet from the saved config
    assert isinstance(bundle.model.visual, ModifiedResNet) and bundle.model_id == saved
    assert torch.allclose(bundle.embed_images(images[:4]), _embed(runs[0][1], bundle, images[:4]), atol=1e-5)


def _embed(model, bundle, images):
    from realrag_core.clip.bundle import ClipBundle

    return ClipBundle(model, bundle.preprocess, bundle.tokenizer, "trained").embed_images(images)

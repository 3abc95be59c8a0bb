"""The demo generator behind the one protocol: determinism, conditioning, training, weight provenance."""

import copy
import json

import numpy as np
import pytest

from realrag_core.clip.bundle import create_untrained, load_clip, save_clip
from realrag_core.config.loading import parse_config
from realrag_core.generators.base import Generator
from realrag_core.generators.demo.diffusion import DemoDiffusionGenerator, TextTokens, build_unet, train_generator
from realrag_core.generators.demo.training import build_demo_generator, training_set
from realrag_core.data.sources.registry import iter_records, prepare_source
from realrag_core.data.sources.synthetic import draw_concept
from realrag_core.data.world import compute_world


@pytest.fixture
def text(smoke_cfg, tmp_path):
    model, *_ = create_untrained(tmp_path / "clip", smoke_cfg.clip.architecture, seed=0)
    save_clip(model, tmp_path / "clip")
    return load_clip(tmp_path / "clip")


def _gen(smoke_cfg, clip, seed=0, scheduler="ddim"):
    import torch

    torch.manual_seed(seed)
    tokens = TextTokens(clip)
    unet = build_unet(smoke_cfg.generator.unet, tokens.width, tokens.dim)
    return DemoDiffusionGenerator(
        unet, tokens, smoke_cfg.generator.unet, "test", steps=3, guidance=2.0, batch_size=2, scheduler=scheduler
    )


def _px(img):
    return np.asarray(img, dtype=np.int16)


@pytest.mark.parametrize("scheduler", ["ddim", "dpmsolver++", "unipc"])
def test_fits_the_protocol_and_is_batch_invariant(smoke_cfg, text, scheduler):
    gen = _gen(smoke_cfg, text, scheduler=scheduler)
    assert isinstance(gen, Generator)
    ref = draw_concept("red", "circle", "filled", 32)
    batch = gen.generate(["a red circle", "a blue star", "a green ring"], [ref, None, ref], [7, 8, 9])
    alone = gen.generate(["a green ring"], [ref], [9])
    assert batch[2].size == (16, 16)
    assert np.array_equal(_px(batch[2]), _px(alone[0]))  # depends on its own (prompt, ref, seed) only
    again = gen.generate(["a red circle"], [ref], [7])
    assert np.array_equal(_px(batch[0]), _px(again[0]))


def test_conditioning_changes_the_output(smoke_cfg, text):
    gen = _gen(smoke_cfg, text)
    ref = draw_concept("red", "circle", "filled", 32)
    with_ref, without = gen.generate(["a red circle"] * 2, [ref, None], [3, 3])
    other_text = gen.generate(["a blue star"], [ref], [3])[0]
    other_seed = gen.generate(["a red circle"], [ref], [4])[0]
    assert np.abs(_px(with_ref) - _px(without)).mean() > 1
    assert np.abs(_px(with_ref) - _px(other_text)).mean() > 0.1
    assert np.abs(_px(with_ref) - _px(other_seed)).mean() > 1


def test_samplers_differ_and_the_generator_id_names_every_setting_that_changes_images(smoke_cfg, text):
    from realrag_core.generators.demo.config import SamplingConfig
    from realrag_core.generators.demo.training import demo_generator_id

    ref = draw_concept("red", "circle", "filled", 32)
    images = {
        k: _px(_gen(smoke_cfg, text, scheduler=k).generate(["a red circle"], [ref], [3])[0])
        for k in ("ddim", "dpmsolver++", "unipc")
    }
    assert np.abs(images["ddim"] - images["dpmsolver++"]).mean() > 0.1
    with pytest.raises(ValueError, match="unknown sampler"):
        _gen(smoke_cfg, text, scheduler="euler")
    base = SamplingConfig(steps=15, guidance=2.0)
    ids = {
        demo_generator_id("k", base.model_copy(update=u))
        for u in ({}, {"steps": 25}, {"guidance": 3.0}, {"scheduler": "unipc"}, {"reference_guidance": 2.0})
    }
    assert len(ids) == 5  # each setting that changes images gives another id (resumed stages never mix them)
    assert demo_generator_id("k", base.model_copy(update={"batch_size": 7})) == demo_generator_id("k", base)
    assert demo_generator_id("k", base).startswith("demo-diffusion:k-")


def test_protocol_arguments_are_checked(smoke_cfg, text):
    gen = _gen(smoke_cfg, text)
    with pytest.raises(ValueError, match="one seed per prompt"):
        gen.generate(["a", "b"], None, [1])
    with pytest.raises(ValueError, match="references"):
        gen.generate(["a", "b"], [None], [1, 2])


def test_training_set_uses_known_concepts_and_other_artists_as_references(smoke_cfg):
    prepare_source(smoke_cfg.source)
    records = list(iter_records(smoke_cfg.source))
    world = compute_world(records, smoke_cfg.world)
    images, captions, pools, kept = training_set(smoke_cfg, world, records)
    assert {r.style for r in kept} == {"filled", "shadow", "striped", "outline"}  # never the reference style
    assert {world.concept_split[r.concept] for r in kept} == {"known"}
    for i, pool in enumerate(pools):
        assert pool and all(kept[j].concept == kept[i].concept and kept[j].style != kept[i].style for j in pool)
    assert images.shape[1:] == (3, 16, 16) and images.min() >= -1 and images.max() <= 1


@pytest.fixture
def training_data(smoke_cfg, text):
    """The smoke world's generator training set and the text tower's tokens."""
    prepare_source(smoke_cfg.source)
    records = list(iter_records(smoke_cfg.source))
    world = compute_world(records, smoke_cfg.world)
    images, captions, pools, _ = training_set(smoke_cfg, world, records)
    return world, images, captions, pools, TextTokens(text)


def test_training_lowers_the_denoising_loss(smoke_cfg, training_data):
    _, images, captions, pools, tokens = training_data
    unet = build_unet(smoke_cfg.generator.unet, tokens.width, tokens.dim)
    losses = train_generator(
        unet,
        tokens,
        smoke_cfg.generator.unet,
        images=images,
        captions=captions,
        reference_pool=pools,
        steps=60,
        batch_size=16,
        lr=2e-3,
        mix=smoke_cfg.generator.train.mix,
        seed=0,
    )
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])


def test_snapshots_are_the_weights_of_shorter_runs_and_leave_the_run_unchanged(smoke_cfg, training_data):
    """A snapshot after k steps holds what a k-step run saves (EMA average included); taking snapshots, even with
    a callback that draws random numbers, changes nothing in the run itself."""
    import torch

    _, images, captions, pools, tokens = training_data
    spec, mix = smoke_cfg.generator.unet, smoke_cfg.generator.train.mix

    def run(steps, **snap):
        torch.manual_seed(0)
        unet = build_unet(spec, tokens.width, tokens.dim)
        losses = train_generator(
            unet,
            tokens,
            spec,
            images=images,
            captions=captions,
            reference_pool=pools,
            steps=steps,
            batch_size=8,
            lr=1e-3,
            mix=mix,
            seed=0,
            ema_decay=0.9,
            **snap,
        )
        return losses, {k: v.clone() for k, v in unet.state_dict().items()}

    taken = {}

    def on_snapshot(step, unet):
        taken[step] = {k: v.clone() for k, v in unet.state_dict().items()}
        torch.randn(100)  # a sampling check would draw noise too

    losses, final = run(6, snapshot_every=2, on_snapshot=on_snapshot)
    assert sorted(taken) == [2, 4]  # the last step's weights are the run's own result, not a snapshot
    short_losses, short = run(4)
    assert short_losses == losses[:4]
    assert all(torch.equal(taken[4][k], short[k]) for k in short)
    assert not all(torch.equal(taken[2][k], taken[4][k]) for k in short)
    plain_losses, plain = run(6)
    assert plain_losses == losses and all(torch.equal(final[k], plain[k]) for k in plain)


def _smoke_world(smoke_data, tmp_path):
    data = copy.deepcopy(smoke_data)
    cfg = parse_config(data, tmp_path)
    prepare_source(cfg.source)
    records = list(iter_records(cfg.source))
    return data, cfg, records, compute_world(records, cfg.world)


def test_shipped_weights_are_used_only_for_their_split(smoke_data, tmp_path):
    data, cfg, records, world = _smoke_world(smoke_data, tmp_path)
    _, first = build_demo_generator(cfg, world, records, tmp_path / "made", tmp_path / "reports")
    assert first["source"] == "trained" and first["text_encoder"]["reused"] is False
    data["generator"]["shipped_weights"] = str(tmp_path / "made")
    shipped_cfg = parse_config(data, tmp_path)
    _, used = build_demo_generator(shipped_cfg, world, records, tmp_path / "run", tmp_path / "reports")
    # the text encoder travels with the weights: nothing is trained, not even it
    assert used["source"] == "shipped" and used["key"] == first["key"] and used["text_encoder"]["reused"] is True
    assert used["text_encoder"]["model_id"] == first["text_encoder"]["model_id"]
    # another split (seed): the shipped weights are refused and a generator is trained for it, on the shipped
    # text encoder (same recipe), not a re-made one
    data["world"]["seed"] = 5
    other_cfg = parse_config(data, tmp_path)
    other_world = compute_world(records, other_cfg.world)
    _, refused = build_demo_generator(other_cfg, other_world, records, tmp_path / "other", tmp_path / "reports")
    assert refused["source"] == "trained" and refused["key"] != first["key"]
    assert (
        refused["text_encoder"]["reused"] is True
        and refused["text_encoder"]["model_id"] == first["text_encoder"]["model_id"]
    )
    assert json.loads((tmp_path / "other" / "generator.json").read_text())["world_hash"] == other_world.hash


def test_the_generator_reads_prompts_with_its_own_text_encoder_not_the_base_clip(smoke_data, tmp_path):
    """Another base CLIP recipe leaves the generator's key, text encoder and images unchanged; another text
    encoder recipe gives another key (the shipped weights would be refused)."""
    data, cfg, records, world = _smoke_world(smoke_data, tmp_path)
    gen, first = build_demo_generator(cfg, world, records, tmp_path / "a", tmp_path / "reports")
    data["clip"]["train"]["steps"] = 7
    data["clip"]["architecture"]["embed_dim"] = 16
    other_clip = parse_config(data, tmp_path)
    gen2, same = build_demo_generator(other_clip, world, records, tmp_path / "b", tmp_path / "reports")
    assert same["key"] == first["key"] and same["text_encoder"]["model_id"] == first["text_encoder"]["model_id"]
    a, b = gen.generate(["a red circle"], None, [3]), gen2.generate(["a red circle"], None, [3])
    assert np.array_equal(_px(a[0]), _px(b[0]))
    data["generator"]["text_encoder"]["train"]["steps"] = 12
    other_text = parse_config(data, tmp_path)
    _, changed = build_demo_generator(other_text, world, records, tmp_path / "c", tmp_path / "reports")
    assert changed["key"] != first["key"] and changed["text_encoder"]["model_id"] != first["text_encoder"]["model_id"]


def test_two_scale_guidance_reduces_to_joint_guidance_when_the_scales_match(smoke_cfg, text):
    gen = _gen(smoke_cfg, text)
    ref = draw_concept("red", "circle", "filled", 32)
    joint = gen.generate(["a red circle", "a blue star"], [ref, None], [5, 6])
    gen.reference_guidance = gen.guidance  # pu + s(pr - pu) + s(pc - pr) == pu + s(pc - pu)
    same = gen.generate(["a red circle", "a blue star"], [ref, None], [5, 6])
    for a, b in zip(joint, same):
        assert np.abs(_px(a) - _px(b)).max() <= 1  # equal up to float rounding
    gen.reference_guidance = 4.0
    stronger = gen.generate(["a red circle"], [ref], [5])[0]
    assert np.abs(_px(stronger) - _px(joint[0])).mean() > 0.5
    assert np.array_equal(_px(stronger), _px(gen.generate(["a red circle"], [ref], [5])[0]))


@pytest.mark.parametrize("pool", ["other_style", "other_artist", "same_artist"])
def test_reference_pools_follow_the_configured_artists(smoke_cfg, pool):
    prepare_source(smoke_cfg.source)
    records = list(iter_records(smoke_cfg.source))
    roles = smoke_cfg.world.styles.model_copy(update={"artists": {"a": ("filled", "shadow")}})
    cfg = smoke_cfg.model_copy(
        update={
            "world": smoke_cfg.world.model_copy(update={"styles": roles}),
            "generator": smoke_cfg.generator.model_copy(
                update={"train": smoke_cfg.generator.train.model_copy(update={"reference_pool": pool})}
            ),
        }
    )
    world = compute_world(records, cfg.world)
    _, _, pools, kept = training_set(cfg, world, records)
    artist = {"filled": "a", "shadow": "a"}
    for i, p in enumerate(pools):
        me = kept[i]
        assert all(kept[j].concept == me.concept and kept[j].style != me.style for j in p)
        same = [artist.get(kept[j].style, kept[j].style) == artist.get(me.style, me.style) for j in p]
        if pool == "other_artist":
            assert not any(same)
        elif pool == "same_artist":
            assert all(same) and (bool(p) == (me.style in artist))  # a one-style artist gets no reference
        else:
            assert len(p) == len({r.style for r in kept if r.concept == me.concept}) - 1


def test_paired_transform_moves_target_and_reference_alike():
    import torch

    from realrag_core.generators.demo.diffusion import paired_transform

    image = torch.ones(3, 8, 8)
    image[:, 2, 1] = -1.0  # one dark pixel at row 2, column 1
    moved = paired_transform(image, flip=True, dx=-2, dy=-1)
    assert torch.nonzero(moved[0] < 0).tolist() == [[2 - 1, (8 - 1 - 1) - 2]]  # mirrored to column 6, then moved
    assert moved.shape == image.shape and bool((moved >= -1).all())
    assert torch.equal(paired_transform(image, False, 0, 0), image)


def test_paired_augmentation_trains_and_leaves_the_key_of_profiles_without_it(smoke_cfg, training_data):
    from realrag_core.generators.demo.config import PairedAugment
    from realrag_core.generators.demo.training import generator_key

    world, images, captions, pools, tokens = training_data
    runs = []
    for paired in (None, PairedAugment(flip=True, max_shift=2)):
        unet = build_unet(smoke_cfg.generator.unet, tokens.width, tokens.dim)
        runs.append(
            train_generator(
                unet,
                tokens,
                smoke_cfg.generator.unet,
                images=images,
                captions=captions,
                reference_pool=pools,
                steps=5,
                batch_size=8,
                lr=1e-3,
                mix=smoke_cfg.generator.train.mix,
                seed=0,
                paired=paired,
            )
        )
    assert all(np.isfinite(r).all() for r in runs) and runs[0] != runs[1]  # the augmented batches differ
    train = smoke_cfg.generator.train.model_copy(update={"paired_augment": PairedAugment()})
    on = smoke_cfg.model_copy(update={"generator": smoke_cfg.generator.model_copy(update={"train": train})})
    assert generator_key(on, world, "t") != generator_key(smoke_cfg, world, "t")
    # the key of a profile without it is what it was before the option existed (shipped weights stay valid)
    import hashlib

    blob = json.dumps(
        [
            world.hash,
            "t",
            smoke_cfg.generator.unet.model_dump(mode="json"),
            {
                k: v
                for k, v in smoke_cfg.generator.train.model_dump(mode="json").items()
                if k not in ("paired_augment", "unfamiliar_text", "outside_share", "styles")
            },
        ],
        sort_keys=True,
    )
    assert generator_key(smoke_cfg, world, "t") == hashlib.sha256(blob.encode()).hexdigest()[:16]


def test_outside_share_trains_only_the_reference_pathway_on_concepts_outside_the_world(smoke_cfg, text):
    """Reference-conditioned examples come from concepts outside the world (their image, caption and reference),
    text-only examples stay known ones, and off means the UNet never sees an outside image or caption."""
    import torch

    from realrag_core.generators.demo.config import GeneratorMix
    from realrag_core.generators.demo.training import outside_set

    prepare_source(smoke_cfg.source)
    records = list(iter_records(smoke_cfg.source))
    world = compute_world(records, smoke_cfg.world.model_copy(update={"num_concepts": 8}))
    images, captions, pools, kept = training_set(smoke_cfg, world, records)
    o_images, o_captions, o_pools, o_kept = outside_set(smoke_cfg, world, records)
    assert o_kept and not {r.concept for r in o_kept} & set(world.concepts)
    assert {r.concept for r in kept} == set(world.concepts_in("known"))
    assert all(o_kept[j].concept == r.concept and j != i for i, r in enumerate(o_kept) for j in o_pools[i])
    tokens = TextTokens(text)
    outside_rows = tokens(sorted(set(o_captions)))

    def seen_by_unet(share, mix):
        unet = build_unet(smoke_cfg.generator.unet, tokens.width, tokens.dim)
        seen = []
        forward = unet.forward
        unet.forward = lambda x, *a, **k: (
            seen.append((x.detach(), k["encoder_hidden_states"].detach())) or forward(x, *a, **k)
        )
        train_generator(
            unet,
            tokens,
            smoke_cfg.generator.unet,
            images=images,
            captions=captions,
            reference_pool=pools,
            steps=3,
            batch_size=8,
            lr=1e-3,
            mix=mix,
            seed=0,
            outside_share=share,
            outside=(o_images, o_captions, o_pools),
        )
        inputs, hidden = torch.cat([s[0] for s in seen]), torch.cat([s[1] for s in seen])
        n_text = sum(any(torch.allclose(h, o, atol=1e-6) for o in outside_rows) for h in hidden)
        refs = inputs[:, 3:]  # the spatial reference channels
        n_refs = sum(any(torch.equal(r, o) for o in o_images) for r in refs)
        return n_text, n_refs, len(hidden)

    both = GeneratorMix(text_and_reference=1.0, reference_only=0.0, text_only=0.0)
    text_only = GeneratorMix(text_and_reference=0.0, reference_only=0.0, text_only=1.0)
    assert seen_by_unet(1.0, both) == (24, 24, 24)  # every example is an outside one, caption and reference
    assert seen_by_unet(None, both)[:2] == (0, 0)
    assert seen_by_unet(1.0, text_only)[:2] == (0, 0)  # text-only examples never come from outside
    with pytest.raises(ValueError, match="outside the world"):
        train_generator(
            build_unet(smoke_cfg.generator.unet, tokens.width, tokens.dim),
            tokens,
            smoke_cfg.generator.unet,
            images=images,
            captions=captions,
            reference_pool=pools,
            steps=1,
            batch_size=8,
            lr=1e-3,
            mix=both,
            seed=0,
            outside_share=0.5,
        )


def test_unfamiliar_text_swaps_captions_of_reference_examples_for_outside_ones(smoke_cfg, training_data):
    """With the option on, text+reference examples carry a caption of a concept outside the world; off, the
    UNet never sees one (and the example draw is the same as before the option existed)."""
    import torch

    from realrag_core.generators.demo.config import GeneratorMix

    world, images, captions, pools, tokens = training_data
    outside = ["a lighthouse", "a accordion"]
    assert not set(outside) & set(captions)
    outside_rows = tokens(outside)
    mix = GeneratorMix(text_and_reference=1.0, reference_only=0.0, text_only=0.0)
    counts = []
    for share in (None, 1.0):
        unet = build_unet(smoke_cfg.generator.unet, tokens.width, tokens.dim)
        seen = []
        forward = unet.forward
        unet.forward = lambda *a, **k: seen.append(k["encoder_hidden_states"].detach()) or forward(*a, **k)
        train_generator(
            unet,
            tokens,
            smoke_cfg.generator.unet,
            images=images,
            captions=captions,
            reference_pool=pools,
            steps=3,
            batch_size=8,
            lr=1e-3,
            mix=mix,
            seed=0,
            unfamiliar_text=share,
            unfamiliar_captions=outside,
        )
        rows = torch.cat(seen)
        counts.append(sum(bool(torch.allclose(r, o, atol=1e-6)) for r in rows for o in outside_rows))
    with_pool = sum(bool(p) for p in pools)
    assert with_pool > 0 and counts[0] == 0 and counts[1] > 0
    with pytest.raises(ValueError, match="outside the world"):
        train_generator(
            build_unet(smoke_cfg.generator.unet, tokens.width, tokens.dim),
            tokens,
            smoke_cfg.generator.unet,
            images=images,
            captions=captions,
            reference_pool=pools,
            steps=1,
            batch_size=8,
            lr=1e-3,
            mix=mix,
            seed=0,
            unfamiliar_text=0.5,
        )


def test_the_generator_checks_never_hand_over_a_file_that_does_not_decode(smoke_data, tmp_path):
    """The generator stage runs before stage 1, on the user's files as listed: a concept's broken database image
    (stage 1 rejects it later) is never a reference, and a concept none of whose images decode is left out of the
    reference arms instead of ending the stage (a new-user trial's IndexError)."""
    from PIL import Image

    from realrag_core.data.sources.listing import ImageRecord
    from realrag_core.generators.demo.training import check_generator, reference_effect

    _, cfg, records, world = _smoke_world(smoke_data, tmp_path)
    novel = world.concepts_in("novel")
    database = cfg.world.styles.database[0]
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a picture")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    broken = [ImageRecord(junk, f"a {novel[0]}", novel[0], database)]  # beside the concept's good images
    # the last novel concept: only broken files in the database style
    only_broken = [ImageRecord(empty, f"a {novel[-1]}", novel[-1], database)]
    kept = [r for r in records if not (r.concept == novel[-1] and r.style in cfg.world.styles.database)]
    handed = []

    class Recording:
        def generate(self, prompts, references, seeds):
            handed.extend(references or [])
            return [Image.new("RGB", (16, 16), (i * 7 % 255, 0, 0)) for i in range(len(prompts))]

    judge_dir = tmp_path / "judge"
    model, *_ = create_untrained(judge_dir, cfg.judge.architecture, seed=0)
    save_clip(model, judge_dir)
    judge = load_clip(judge_dir)
    for _ in range(3):  # several draws: the broken image is among each pick's candidates
        checks, _ = check_generator(Recording(), judge, world, broken + kept + only_broken, cfg)
        effect = reference_effect(Recording(), judge, world, broken + kept + only_broken, cfg)
    assert handed and all(isinstance(r, Image.Image) for r in handed)
    assert checks["novel/text_and_reference"]["n"] == (len(novel) - 1) * cfg.generator.check_samples_per_concept
    assert effect["concepts"] == len(novel) - 1


def test_too_few_novel_concepts_names_the_classes_left_out_of_the_world(smoke_data, tmp_path):
    """A new-user trial: six classes of eight images, one of which the held-out draw left without a reference-style
    image; the generator's check then found one novel concept and said only "give the source more classes"."""
    from realrag_core.generators.demo.training import reference_effect

    _, cfg, records, world = _smoke_world(smoke_data, tmp_path)
    novel = world.concepts_in("novel")
    gone = set(novel[1:])  # every novel concept but one loses its database images
    kept = [r for r in records if not (r.concept in gone and r.style in cfg.world.styles.database)]
    with pytest.raises(ValueError, match="give the source more classes") as err:
        reference_effect(None, None, world, kept, cfg)
    assert f"{len(gone)} class(es) of the source are not in the world" in str(err.value)
    assert all(f"{c}: no image in the style(s)" in str(err.value) for c in gone)

"""Stage 6 kernels: judge features in torchmetrics, bootstrap intervals, paired comparisons."""

from datetime import datetime, timezone

import numpy as np
import pytest
from PIL import Image

from realrag_core.clip.bundle import create_untrained, load_clip, save_clip
from realrag_core.evaluate.metrics import bootstrap_ci, distribution_metrics
from realrag_core.evaluate.results import paired_comparisons, results_markdown
from realrag_core.data.sources.synthetic import draw_concept


@pytest.fixture
def judge(smoke_cfg, tmp_path):
    model, *_ = create_untrained(tmp_path / "j", smoke_cfg.judge.architecture, seed=1)
    save_clip(model, tmp_path / "j")
    return load_clip(tmp_path / "j")


def test_distribution_metrics_separate_same_from_different(judge):
    shapes = ["circle", "square", "triangle", "star"]
    reds = [draw_concept(c, s, st, 32) for c in ("red", "orange") for s in shapes for st in ("filled", "shadow")]
    reds_again = [draw_concept(c, s, st, 32) for c in ("red", "orange") for s in shapes for st in ("striped", "dotted")]
    blues = [draw_concept(c, s, "outline", 32) for c in ("blue", "teal", "black", "purple") for s in shapes]
    same = distribution_metrics(judge, reds, reds)
    near = distribution_metrics(judge, reds, reds_again)
    far = distribution_metrics(judge, reds, blues)
    assert abs(same["fid_judge"]) < 1e-3
    assert far["fid_judge"] > near["fid_judge"] and far["kid_judge"] > same["kid_judge"]
    assert far["n_real"] == 16 and far["n_fake"] == 16
    assert distribution_metrics(judge, reds[:2], blues) is None  # too few for a covariance: no number


def test_kid_does_not_depend_on_what_ran_before_and_leaves_the_random_state_alone(judge):
    """KID averages random subsets: they are drawn from a seeded generator, so ``fid`` run alone gives the
    number it gives after other steps in the same process."""
    import torch

    shapes = ["circle", "square", "triangle", "star"]
    reds = [draw_concept(c, s, st, 32) for c in ("red", "orange") for s in shapes for st in ("filled", "shadow")]
    blues = [draw_concept(c, s, "outline", 32) for c in ("blue", "teal", "black", "purple") for s in shapes]
    got = []
    for state in (1, 2):
        torch.manual_seed(state)
        torch.rand(state * 100)  # whatever an earlier step drew
        got.append(distribution_metrics(judge, reds, blues)["kid_judge"])
        after = torch.rand(3)
        torch.manual_seed(state)
        torch.rand(state * 100)
        assert torch.equal(after, torch.rand(3))  # the caller's random stream goes on as if KID had not run
    assert got[0] == got[1]


def test_bootstrap_resamples_prompts_not_images():
    values = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=float)
    lo, hi = bootstrap_ci(values, ["a"] * 4 + ["b"] * 4)
    assert lo == 0.0 and hi == 1.0  # two prompts: the interval spans everything
    lo, hi = bootstrap_ci(np.ones(20), [str(i) for i in range(20)])
    assert lo == hi == 1.0


def test_paired_comparisons_use_the_same_prompts_and_seeds():
    scored = []
    for p in range(10):
        for seed in (0, 1):
            base = {"prompt_id": f"p{p}", "concept": f"c{p}", "seed": seed, "generator_split": "novel"}
            scored.append({**base, "kind": "clip", "retriever_seed": None, "concept_acc": 0.0, "retrieved_id": f"x{p}"})
            scored.append(
                {
                    **base,
                    "kind": "reflective",
                    "retriever_seed": 0,
                    "concept_acc": 1.0 if p < 7 else 0.0,
                    "retrieved_id": f"x{p}" if p < 5 else f"y{p}",
                }
            )
    [row] = [r for r in paired_comparisons(scored) if (r["a"], r["b"]) == ("reflective", "clip")]
    assert row["diff"] == pytest.approx(0.7) and row["n"] == 20 and row["prompts"] == 10
    assert row["different_retrievals"] == pytest.approx(0.5) and row["lo"] > 0.3
    # a second training seed of reflective that does no better: each seed is paired with clip on its own
    # (prompt, seed), and with a second contrastive seed pairing is seed with seed
    for s in list(scored):
        if s["kind"] == "reflective":
            scored.append({**s, "retriever_seed": 1, "concept_acc": 0.0, "retrieved_id": f"x{s['prompt_id'][1:]}"})
            scored.append({**s, "kind": "contrastive", "retriever_seed": 1, "concept_acc": 0.0})
    rows = paired_comparisons(scored)
    [both] = [r for r in rows if (r["a"], r["b"]) == ("reflective", "clip")]
    assert (
        both["n"] == 40 and both["diff"] == pytest.approx(0.35) and both["different_retrievals"] == pytest.approx(0.25)
    )
    [rc] = [r for r in rows if (r["a"], r["b"]) == ("reflective", "contrastive")]
    assert rc["n"] == 20 and rc["diff"] == pytest.approx(0.0)  # only seed 1 exists in both
    # reflective's two seeds disagree (0.7 vs 0.0 over clip): the interval over concepts and seeds says so
    assert both["retriever_seeds"] == 2 and both["concepts"] == 10 and both["lo"] < 0.05
    assert both["mde"] == pytest.approx(2.8 * both["se"]) and both["mde"] > row["mde"]
    md = results_markdown(
        [{"arm": "clip", "split": "novel", "metric": "concept_acc", "value": 0.0, "n": 20, "lo": 0.0, "hi": 0.0}], [row]
    )
    assert "reflective - clip | novel | +0.700" in md


@pytest.mark.parametrize(
    "mean,std",
    [((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))],
)
def test_judge_features_normalise_like_the_judges_own_preprocessing(smoke_cfg, tmp_path, mean, std):
    """The torchmetrics extractor must see what the judge sees, also for a pretrained judge (OpenAI mean/std)."""
    import json

    import torch

    from realrag_core.evaluate.metrics import JudgeFeatures, to_uint8

    model, *_ = create_untrained(tmp_path / "j", smoke_cfg.judge.architecture, seed=1)
    save_clip(model, tmp_path / "j")
    cfg = json.loads((tmp_path / "j" / "open_clip_config.json").read_text())
    cfg["preprocess_cfg"].update(mean=list(mean), std=list(std))
    (tmp_path / "j" / "open_clip_config.json").write_text(json.dumps(cfg))
    judge = load_clip(tmp_path / "j")
    size = judge.model.visual.image_size[0]
    images = [draw_concept(c, s, "filled", size) for c in ("red", "blue") for s in ("circle", "star")]
    seen = []
    encode = judge.model.encode_image
    judge.model.encode_image = lambda x: seen.append(x) or encode(x)
    JudgeFeatures(judge)(to_uint8(images, size))
    expected = torch.stack([judge.preprocess(im) for im in images])  # the judge's own eval transform
    assert torch.allclose(seen[0], expected, atol=0.02)


def test_inception_fid_loads_weights_from_the_config_and_orders_sets(inception_weights, tmp_path):
    from realrag_core.config.stages import InceptionConfig
    from realrag_core.evaluate.metrics import inception_metrics

    spec = InceptionConfig(weights=inception_weights, batch_size=4)
    shapes = ["circle", "square", "triangle", "star"]
    reds = [draw_concept(c, s, "filled", 32) for c in ("red", "orange") for s in shapes]
    blues = [draw_concept(c, s, "outline", 32) for c in ("blue", "teal") for s in shapes]
    same = inception_metrics(spec, reds, reds)
    far = inception_metrics(spec, reds, blues)
    assert abs(same["fid"]) < 1e-2 and far["fid"] > 1e-2 + same["fid"]
    assert far["n_real"] == 8 and far["n_fake"] == 8
    assert inception_metrics(spec, reds[:2], blues) is None
    with pytest.raises(FileNotFoundError, match="metrics.inception.weights"):
        inception_metrics(InceptionConfig(weights=tmp_path / "absent.pth"), reds, blues)


def test_clip_i_is_the_mean_cosine_with_the_concepts_real_images(judge):
    from realrag_core.evaluate.metrics import clip_scores

    real = [
        ("red circle", draw_concept("red", "circle", "filled", 32)),
        ("red circle", draw_concept("red", "circle", "shadow", 32)),
        ("blue star", draw_concept("blue", "star", "filled", 32)),
    ]
    images = [real[0][1], real[2][1], draw_concept("green", "square", "filled", 32)]
    out = clip_scores(
        judge,
        images,
        ["a red circle", "a blue star", "a green square"],
        ["red circle", "blue star", "green square"],
        real,
    )
    emb = judge.embed_images([im for _, im in real] + [images[2]])
    assert out["clip_i"][0] == pytest.approx(float(emb[0] @ (emb[0] + emb[1]) / 2), abs=1e-5)
    assert out["clip_i"][1] == pytest.approx(1.0, abs=1e-5)  # the image is the concept's only reference
    assert np.isnan(out["clip_i"][2])  # no real image of that concept: no number, not a zero
    text = judge.embed_texts(["a red circle"])
    assert out["clip_t"][0] == pytest.approx(float(emb[0] @ text[0]), abs=1e-5)


def test_reference_set_drops_near_duplicates_of_database_images(judge, tmp_path):
    import pyarrow as pa

    from realrag_core.config.stages import IndexConfig
    from realrag_core.evaluate.reference_set import fid_reference_set
    from realrag_core.data.sources.listing import ImageRecord
    from realrag_core.embed.table import VECTOR_COLUMN, open_embedding_table, upsert

    records = []
    for colour, shape in (("red", "circle"), ("blue", "star"), ("green", "square")):
        for style in ("filled", "dotted"):
            path = tmp_path / f"{style}-{colour}-{shape}.png"
            draw_concept(colour, shape, style, 32).save(path)
            records.append(ImageRecord(path, f"a {colour} {shape}", f"{colour} {shape}", style))
    copied = tmp_path / "dotted-copy.png"  # a database image posted again in the held-out style
    copied.write_bytes(records[0].path.read_bytes())
    records.append(ImageRecord(copied, "a red circle", "red circle", "dotted"))
    database = [r for r in records if r.style == "filled"]
    emb = judge.embed_images([Image.open(r.path).convert("RGB") for r in database]).numpy()
    table, _ = open_embedding_table(str(tmp_path / "db"), "t", judge.dim, judge.model_id)
    upsert(
        table,
        pa.table(
            {
                "id": [r.path.name for r in database],
                "path": [str(r.path) for r in database],
                "caption": [r.caption for r in database],
                "concept": [r.concept for r in database],
                "style": [r.style for r in database],
                "split": ["db"] * 3,
                VECTOR_COLUMN: [list(v) for v in emb],
                "model_id": [judge.model_id] * 3,
                "added_at": [datetime.now(timezone.utc)] * 3,
            },
            schema=table.schema,
        ),
    )
    by_split = {"known": {"red circle"}, "novel": {"blue star", "green square"}}
    ref, report = fid_reference_set(
        records, "dotted", by_split, clip=judge, table=table, index_cfg=IndexConfig(), threshold=0.99999
    )
    assert [d["path"] for d in report["near_duplicates"]] == [str(copied)]
    assert report["near_duplicates"][0]["database_id"] == records[0].path.name
    assert report["kept"] == {"known": 1, "novel": 2} and report["listed"] == 4
    assert {c for c, _ in ref["novel"]} == {"blue star", "green square"}
    kept_all, report_all = fid_reference_set(records, "dotted", by_split)  # no check: everything stays
    assert report_all["kept"] == {"known": 2, "novel": 2}


def test_inception_weights_download_into_the_configured_cache(inception_weights, tmp_path, monkeypatch):
    """With no weights file, the weights come through torch hub into metrics.inception.cache_dir, loaded with
    weights_only=True."""
    import torch

    from realrag_core.config.stages import InceptionConfig
    from realrag_core.evaluate.metrics import inception_metrics

    seen = []

    def fake_download(url, model_dir=None, **kwargs):  # stands in for the network, nothing else
        seen.append((url, model_dir, kwargs.get("weights_only")))
        return torch.load(inception_weights, weights_only=True)

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    before = torch.hub.get_dir()
    images = [draw_concept(c, "circle", "filled", 32) for c in ("red", "blue", "green", "orange")]
    out = inception_metrics(InceptionConfig(cache_dir=tmp_path / "hub"), images, images[::-1])
    assert seen and seen[0][0].startswith("https://") and seen[0][1:] == (str(tmp_path / "hub" / "checkpoints"), True)
    assert torch.hub.get_dir() == before and out["n_fake"] == 4


class _Payload:  # what a booby-trapped checkpoint holds: unpickling it would run code
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_user_supplied_weights_are_never_unpickled(inception_weights, tmp_path):
    """A .pth that carries code instead of tensors is refused with a clear error and its code never runs (the
    library underneath would load it with weights_only=False); safetensors and plain state dicts load and agree."""
    import torch
    from safetensors.torch import save_file

    from realrag_core.config.stages import InceptionConfig
    from realrag_core.evaluate.metrics import inception_metrics, inception_state_dict

    marker = tmp_path / "code-ran"
    state = torch.load(inception_weights, weights_only=True)
    trapped = tmp_path / "trapped.pth"
    torch.save({**state, "extra": _Payload(marker)}, trapped)
    images = [draw_concept(c, "circle", "filled", 32) for c in ("red", "blue", "green", "orange")]
    with pytest.raises(ValueError, match="holds more than tensors"):
        inception_metrics(InceptionConfig(weights=trapped), images, images)
    assert not marker.exists()
    safe = tmp_path / "inception.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(safe))
    loaded = inception_state_dict(InceptionConfig(weights=safe))
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    a = inception_metrics(InceptionConfig(weights=safe), images, images[::-1])
    b = inception_metrics(InceptionConfig(weights=inception_weights), images, images[::-1])
    assert a["fid"] == b["fid"]  # (KID draws random subsets)


def test_the_table_says_how_much_of_the_none_to_oracle_gap_each_arm_closes():
    from realrag_core.evaluate.results import gap_closed

    def row(arm, value):
        return {"arm": arm, "split": "novel", "metric": "concept_acc", "value": value, "n": 40, "lo": 0.0, "hi": 1.0}

    rows = [row("none", 0.1), row("oracle", 0.6), row("clip", 0.35), row("reflective", 0.05)]
    index = {(r["arm"], r["split"], r["metric"]): r for r in rows}
    gap = gap_closed(index, "novel")
    assert gap == {"clip": pytest.approx(0.5), "reflective": pytest.approx(-0.1)}
    assert "clip +0.50, reflective -0.10" in results_markdown(rows, [])
    assert gap_closed({k: v for k, v in index.items() if k[0] != "oracle"}, "novel") == {}
    no_gap = {**index, ("oracle", "novel", "concept_acc"): row("oracle", 0.1)}
    assert gap_closed(no_gap, "novel") == {}  # an oracle no better than none: no share to report


def test_the_table_says_at_a_glance_whether_retrieval_costs_known_concepts():
    scored = []
    for p in range(30):
        base = {"prompt_id": f"p{p}", "concept": f"c{p}", "seed": 0, "generator_split": "known", "retriever_seed": None}
        scored.append({**base, "kind": "none", "concept_acc": 1.0, "retrieved_id": None})
        scored.append({**base, "kind": "clip", "concept_acc": 0.0 if p < 15 else 1.0, "retrieved_id": f"x{p}"})
        scored.append({**base, "kind": "oracle", "concept_acc": 1.0, "retrieved_id": f"o{p}"})
    md = results_markdown([], paired_comparisons(scored))
    line = next(x for x in md.splitlines() if x.startswith("known-concept accuracy of each arm minus `none`"))
    assert "oracle +0.000 [+0.00, +0.00] (no worse)" in line and "clip -0.500" in line and "(worse)" in line
    assert line.index("oracle") < line.index("clip")  # arms in the table's order

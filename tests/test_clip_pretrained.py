"""Pretrained open_clip backbones by name and tag. Weights cannot be downloaded here, so the tests register a
tiny model config with open_clip (as its registry holds ViT-B-32) and give a checkpoint *file* as the tag:
the same factory call (`create_model_and_transforms(name, pretrained=...)`) a real tag goes through."""

import json

import open_clip
import pytest
import torch
import yaml
from safetensors.torch import save_file

from realrag_core.clip.bundle import NAME_FILE, load_clip
from realrag_core.clip.pretrained import materialize_pretrained
from realrag_core.config.clip import PretrainedClipConfig
from realrag_core.config.loading import parse_config

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 64, "head_width": 32, "patch_size": 4},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    """A registered model name and two checkpoint files of it (a retriever base and a judge)."""
    folder = tmp_path_factory.mktemp("oc")
    (folder / "RealragTiny-16.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(folder / "RealragTiny-16.json")
    files = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = open_clip.create_model("RealragTiny-16")
        files.append(folder / f"tiny-{seed}.safetensors")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(files[-1]))
    return "RealragTiny-16", files


def test_a_named_model_lands_in_the_store_and_opens_like_the_factory(tiny_checkpoints, tmp_path):
    name, (weights, _) = tiny_checkpoints
    spec = PretrainedClipConfig(kind="open_clip_pretrained", model=name, pretrained=str(weights))
    info = materialize_pretrained(spec, tmp_path / "clip")
    assert not info["reused"] and info["model_id"].startswith(f"open_clip:{name}/{weights.name}:")
    bundle = load_clip(tmp_path / "clip")
    assert bundle.model_id == info["model_id"] and (tmp_path / "clip" / NAME_FILE).is_file()
    reference, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=str(weights))
    reference.eval()
    tokens = open_clip.get_tokenizer(name)(["a red circle", "a blue square"])
    with torch.no_grad():
        assert torch.allclose(bundle.model.encode_text(tokens), reference.encode_text(tokens), atol=1e-5)
    assert materialize_pretrained(spec, tmp_path / "clip")["reused"]
    with pytest.raises(ValueError, match="no model named 'NoSuchModel-99'"):
        materialize_pretrained(spec.model_copy(update={"model": "NoSuchModel-99"}), tmp_path / "other")


@pytest.mark.slow
def test_smoke_pipeline_runs_on_pretrained_models_and_standard_metrics(
    tiny_checkpoints, smoke_data, tmp_path, inception_weights
):
    """Pretrained open_clip retriever base, judge and CLIP-T/CLIP-I scorer, and Inception FID/KID, through
    every asset (checkpoint files stand in for downloaded tags: the same factory call)."""
    import dagster as dg
    import lancedb

    from pipelines.definitions import ALL_ASSETS
    from assets.partitions import ALL_SHARDS
    from assets.resources import RealRagConfigResource

    name, (base, judge) = tiny_checkpoints
    smoke_data["clip"] = {"kind": "open_clip_pretrained", "model": name, "pretrained": str(base)}
    smoke_data["judge"] = {"kind": "open_clip_pretrained", "model": name, "pretrained": str(judge)}
    smoke_data["rag"] = {"seeds": [0], "retriever_splits": ["train", "val", "eval"]}  # enough concepts for FID
    smoke_data["metrics"] = {
        "inception": {"weights": str(inception_weights)},
        "near_duplicate_threshold": None,
        "clip_score": {"kind": "open_clip_pretrained", "model": name, "pretrained": str(judge)},
    }
    smoke_data["retriever"]["ablations"] = {
        "seeds": [0],
        "controls": [],
        "policies": [],
        "k": [],
        "trainable": [],
        "generators": [],
    }
    path = tmp_path / "pretrained.yaml"
    path.write_text(yaml.safe_dump(smoke_data))
    cfg = parse_config(smoke_data, tmp_path)
    result = dg.materialize(
        ALL_ASSETS,
        selection=[
            "image_source",
            "world_splits",
            "prompts",
            "clip_backbone",
            "judge",
            "generator",
            "image_embeddings",
            "generated_images",
            "reflective_negatives",
            "retriever",
            "contrastive_retriever",
            "rag_images",
            "fid",
        ],
        resources={"realrag": RealRagConfigResource(config_path=str(path))},
        tags=ALL_SHARDS,
    )
    assert result.success
    table = lancedb.connect(str(cfg.artifacts_root / "lancedb")).open_table("image_embeddings")
    model_ids = set(table.search().select(["model_id"]).limit(None).to_arrow()["model_id"].to_pylist())
    assert model_ids == {load_clip(cfg.artifacts_root / "checkpoints" / "clip_backbone").model_id}
    assert next(iter(model_ids)).startswith(f"open_clip:{name}/")
    judge_id = load_clip(cfg.artifacts_root / "checkpoints" / "judge").model_id
    assert judge_id.startswith(f"open_clip:{name}/{judge.name}:") and judge_id not in model_ids
    report = json.loads((cfg.artifacts_root / "reports" / "fid.json").read_text())
    assert report["clip_score_model"] == f"open_clip:{name}/{judge.name}"
    rows = {(r["arm"], r["split"], r["metric"]): r for r in report["results"]}
    assert report["reference_set"]["kept"] == {"known": 9, "novel": 3}  # one held-out image per concept
    for arm in ("none", "clip", "contrastive", "reflective"):
        for split in ("known", "novel"):
            assert rows[(arm, split, "fid")]["n"] == rows[(arm, split, "fid_judge")]["n"] > 0
            assert rows[(arm, split, "kid")]["value"] == rows[(arm, split, "kid")]["value"]  # not NaN
            assert -1 <= rows[(arm, split, "clip_i")]["value"] <= 1
    md = (cfg.artifacts_root / "reports" / "results.md").read_text()
    assert "| fid | kid |" in md and "fid/kid are the standard Inception protocol" in md


def test_a_local_dir_model_is_named_for_its_folder_and_reloads_when_its_weights_change(tiny_checkpoints, tmp_path):
    """open_clip's ``local-dir:`` schema loads config and weights from one folder (as the demo CLIP is stored):
    its id must not read 'random', and new weights in that folder must not be answered by the old copy."""
    name, (weights, other) = tiny_checkpoints
    source = tmp_path / "mine"
    materialize_pretrained(
        PretrainedClipConfig(kind="open_clip_pretrained", model=name, pretrained=str(weights)), source
    )
    spec = PretrainedClipConfig(kind="open_clip_pretrained", model=f"local-dir:{source}")
    info = materialize_pretrained(spec, tmp_path / "clip")
    assert info["model_name"] == "open_clip:local-dir:mine" and "random" not in info["model_id"]
    first = load_clip(tmp_path / "clip")
    reference = load_clip(source)
    tokens = open_clip.get_tokenizer(name)(["a red circle"])
    with torch.no_grad():
        assert torch.allclose(first.model.encode_text(tokens), reference.model.encode_text(tokens), atol=1e-5)
    assert materialize_pretrained(spec, tmp_path / "clip")["reused"]
    materialize_pretrained(PretrainedClipConfig(kind="open_clip_pretrained", model=name, pretrained=str(other)), source)
    again = materialize_pretrained(spec, tmp_path / "clip")
    assert not again["reused"] and load_clip(tmp_path / "clip").model_id != first.model_id


def test_a_moved_local_dir_model_keeps_its_id(tiny_checkpoints, tmp_path):
    """A clone moved elsewhere (its weights folder and artifacts with it) is the same model: same model id, so its
    embedding table is not another model's, and the materialized copy is reused; a copy with new file times
    materializes again, to the same id."""
    import os

    name, (weights, _) = tiny_checkpoints
    old = tmp_path / "old"
    materialize_pretrained(
        PretrainedClipConfig(kind="open_clip_pretrained", model=name, pretrained=str(weights)), old / "weights" / "w"
    )
    before = materialize_pretrained(
        PretrainedClipConfig(kind="open_clip_pretrained", model=f"local-dir:{old / 'weights' / 'w'}"), old / "clip"
    )
    os.rename(old, tmp_path / "new")
    new = tmp_path / "new"
    spec = PretrainedClipConfig(kind="open_clip_pretrained", model=f"local-dir:{new / 'weights' / 'w'}")
    after = materialize_pretrained(spec, new / "clip")
    assert after["reused"] and after["model_id"] == before["model_id"] == load_clip(new / "clip").model_id
    for f in (new / "weights" / "w").iterdir():  # a fresh clone: the same bytes, new file times
        os.utime(f, ns=(1, 1))
    again = materialize_pretrained(spec, new / "clip")
    assert not again["reused"] and again["model_id"] == before["model_id"]

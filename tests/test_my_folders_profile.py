"""configs/my_folders.yaml, the README's example profile for a user's own class folders on a CPU: it must run
as shipped (only the folder changed), with the demo's trained CLIP as the retriever's base, and the summary
must read a pretrained base CLIP's report (it has no training time)."""

import numpy as np
import pytest
from PIL import Image

from realrag_core.config.base import PROJECT_ROOT
from realrag_core.config.loading import load_config


def _class_folders(root, classes=6, per_class=12):
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"object {c}"
        folder.mkdir(parents=True)
        colour = rng.integers(0, 255, 3)
        for i in range(per_class):
            pixels = np.clip(colour + rng.normal(0, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    (root / "notes.txt").write_text("a stray file at the top level")


@pytest.mark.slow
def test_the_example_profile_runs_on_a_users_folders_with_the_demo_clip(tmp_path):
    import dagster as dg

    from assets.partitions import ALL_SHARDS
    from assets.resources import RealRagConfigResource
    from pipelines.definitions import ALL_ASSETS
    from realrag_core.clip.bundle import load_clip
    from realrag_core.storage.store import ArtifactStore
    from realrag_core.evaluate.summary import summary_lines

    _class_folders(tmp_path / "photos")
    overrides = {"source.root": str(tmp_path / "photos"), "artifacts_root": str(tmp_path / "artifacts")}
    profile = PROJECT_ROOT / "configs" / "my_folders.yaml"
    cfg = load_config(profile, overrides)
    result = dg.materialize(
        ALL_ASSETS,
        selection=["image_source", "world_splits", "clip_backbone", "image_embeddings"],
        resources={"realrag": RealRagConfigResource(config_path=str(profile), overrides=overrides)},
        tags=ALL_SHARDS,
    )
    assert result.success
    base = load_clip(cfg.artifacts_root / "checkpoints" / "clip_backbone")
    demo = load_clip(PROJECT_ROOT / "weights" / "demo_clip")
    assert base.model_id.split(":")[-1] == demo.model_id.split(":")[-1]  # the same weights, under their own name
    store = ArtifactStore(cfg.artifacts_root)
    assert store.read_report("world_splits")["concepts"] == 6
    lines = summary_lines(store)
    assert any(line.startswith("clip ") and "pretrained, loaded in" in line for line in lines)
    embeddings = next(line for line in lines if line.startswith("embeddings"))
    assert "rejected 1," in embeddings  # the stray top-level file is a reject, not the end of the run

import copy
from pathlib import Path

import pytest
import yaml

from realrag_core.config.base import PROJECT_ROOT, ConfigError
from realrag_core.config.loading import load_config, parse_config


def test_shipped_profiles_load_with_their_own_roots():
    demo = load_config(PROJECT_ROOT / "configs" / "demo.yaml")
    smoke = load_config(PROJECT_ROOT / "configs" / "smoke.yaml")
    assert demo.source.kind == "emoji_demo" and smoke.source.kind == "synthetic"
    assert demo.artifacts_root != smoke.artifacts_root
    # relative paths resolve against the config file's folder, not the working directory
    assert demo.artifacts_root == (PROJECT_ROOT / "artifacts" / "demo").resolve()


def test_env_var_selects_the_profile(monkeypatch):
    monkeypatch.setenv("REALRAG_CONFIG", str(PROJECT_ROOT / "configs" / "smoke.yaml"))
    assert load_config().name == "smoke"
    monkeypatch.delenv("REALRAG_CONFIG")
    assert load_config().name == "demo"


def _error(data, tmp_path) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(data, tmp_path, "test.yaml")
    return str(err.value)


def test_unknown_key_is_named(smoke_data, tmp_path):
    data = copy.deepcopy(smoke_data)
    data["embeddings"]["batchsize"] = 3
    msg = _error(data, tmp_path)
    assert "embeddings.batchsize" in msg and "unknown key" in msg


def test_wrong_type_is_named(smoke_data, tmp_path):
    data = copy.deepcopy(smoke_data)
    data["clip"]["train"]["steps"] = "many"
    msg = _error(data, tmp_path)
    assert "clip.train.steps" in msg and "integer" in msg


def test_missing_path_is_named(tmp_path, smoke_data):
    data = copy.deepcopy(smoke_data)
    data["source"] = {"kind": "caption_file", "image_dir": str(tmp_path / "nope"), "captions": "c.csv"}
    data["world"]["styles"] = {"database": ["photo"], "clip_pretrain": ["other"]}
    msg = _error(data, tmp_path)
    assert "source" in msg and "nope" in msg and "not a folder" in msg


@pytest.mark.parametrize(
    "mutate, field, reason",
    [
        (lambda d: d["clip"]["architecture"].update(image_size=18, patch_size=4), "clip.architecture", "divisible"),
        (lambda d: d["embeddings"].update(batch_size=0), "embeddings.batch_size", "greater than or equal to 1"),
        (lambda d: d["world"].update(known_fraction=1.5), "world.known_fraction", "less than 1"),
        (lambda d: d["world"].update(num_concepts=40), "<root>", "exceeds source.num_concepts"),
    ],
)
def test_impossible_sizes_are_named(smoke_data, tmp_path, mutate, field, reason):
    data = copy.deepcopy(smoke_data)
    mutate(data)
    msg = _error(data, tmp_path)
    assert field in msg and reason in msg


def test_roles_must_use_independent_artists(smoke_data, tmp_path):
    data = copy.deepcopy(smoke_data)
    data["world"]["styles"]["artists"] = {"same_hand": ["outline", "filled"]}
    msg = _error(data, tmp_path)
    assert "world.styles" in msg and "same_hand" in msg


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")


def test_digest_changes_with_content(smoke_cfg, smoke_data, tmp_path):
    other = copy.deepcopy(smoke_data)
    other["world"]["seed"] = 1
    assert parse_config(other, tmp_path).digest("world") != smoke_cfg.digest("world")
    assert parse_config(copy.deepcopy(smoke_data), tmp_path).digest() == smoke_cfg.digest()
    assert yaml.safe_dump(smoke_data)  # the fixture stays serialisable for the CLI tests


def test_a_profile_extends_another_and_overrides_key_by_key(tmp_path):
    base = PROJECT_ROOT / "configs" / "smoke.yaml"
    (tmp_path / "sub").mkdir()
    child = tmp_path / "sub" / "child.yaml"
    child.write_text(
        yaml.safe_dump(
            {
                "extends": str(base),
                "name": "child",
                "artifacts_root": "./out",
                "retriever": {"steps": 7},
                "rag": {"seeds": [5]},
            }
        )
    )
    cfg, smoke = load_config(child), load_config(base)
    assert cfg.name == "child" and cfg.retriever.steps == 7 and cfg.rag.seeds == (5,)
    assert cfg.retriever.lr_grid == smoke.retriever.lr_grid  # the rest of the mapping comes from the base
    assert cfg.artifacts_root == (tmp_path / "sub" / "out").resolve()  # the child's paths: its own folder
    assert cfg.source.image_dir == smoke.source.image_dir  # the base's paths: the base's folder
    # another generator kind replaces the base's generator section instead of merging into it
    child.write_text(
        yaml.safe_dump({"extends": str(base), "generator": {"kind": "diffusers_ip_adapter", "model": "../models/sd"}})
    )
    gen = load_config(child).generator
    assert gen.kind == "diffusers_ip_adapter" and gen.model == str((tmp_path / "models" / "sd").resolve())
    assert gen.ip_adapter.repo == "h94/IP-Adapter"  # a hub id stays a hub id


def test_extends_loops_and_missing_bases_are_named(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("extends: b.yaml\n")
    b.write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_config(a)
    b.write_text("extends: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="nowhere.yaml does not exist"):
        load_config(a)


def test_every_example_profile_validates(tmp_path):
    """configs/*.yaml as shipped (real-model profiles included), with the data folders they name present."""
    import shutil

    from realrag_core.config.base import PROJECT_ROOT
    from realrag_core.config.loading import load_config

    shutil.copytree(PROJECT_ROOT / "configs", tmp_path / "configs")
    (tmp_path / "data" / "stanford_cars" / "train").mkdir(parents=True)
    (tmp_path / "data" / "my_folders").mkdir(parents=True)
    profiles = sorted((tmp_path / "configs").glob("*.yaml"))
    assert {"demo.yaml", "smoke.yaml", "cars_sdxl.yaml", "cars_flux.yaml", "cars_omnigen.yaml"} <= {
        p.name for p in profiles
    }
    for path in profiles:
        cfg = load_config(path)
        assert cfg.artifacts_root.is_relative_to(tmp_path / "artifacts"), path.name  # paths resolve beside the file
        if path.name.startswith("cars_"):  # one database for every generator: the table is keyed by the encoder
            assert cfg.embeddings.table_uri == str(tmp_path / "artifacts" / "cars" / "lancedb")
            assert cfg.prompts.protocols == ("seen_concepts",)  # the paper's protocol on the paper's data
    mine = load_config(tmp_path / "configs" / "my_folders.yaml")  # open_clip's local-dir: beside the file, too
    assert mine.clip.model == f"local-dir:{tmp_path / 'weights' / 'demo_clip'}"
    assert mine.source.root == tmp_path / "data" / "my_folders"
    kinds = {p.name: load_config(p).generator for p in profiles}
    assert (kinds["cars_flux.yaml"].family, kinds["cars_omnigen.yaml"].kind) == ("flux", "diffusers_omnigen")


def test_model_cache_gives_every_download_one_folder(smoke_data, tmp_path):
    from realrag_core.config.loading import parse_config

    smoke_data["model_cache"] = "models"
    smoke_data["clip"] = {"kind": "open_clip_pretrained", "model": "ViT-B-32", "pretrained": "openai"}
    smoke_data["judge"] = {
        "kind": "open_clip_pretrained",
        "model": "ViT-B-16",
        "pretrained": "openai",
        "cache_dir": "/elsewhere",
    }
    smoke_data["generator"] = {"kind": "diffusers_ip_adapter", "family": "sd", "model": "some/model"}
    smoke_data["metrics"] = {"inception": {}}
    cfg = parse_config(smoke_data, tmp_path)
    assert cfg.model_cache == tmp_path / "models"
    assert cfg.clip.cache_dir == tmp_path / "models" / "open_clip"
    assert cfg.judge.cache_dir == Path("/elsewhere")  # a section's own folder wins
    assert cfg.generator.cache_dir == tmp_path / "models" / "huggingface" / "hub"
    assert cfg.metrics.inception.cache_dir == tmp_path / "models" / "torch" / "hub"
    del smoke_data["model_cache"]
    assert parse_config(smoke_data, tmp_path).clip.cache_dir is None


def test_overrides_set_dotted_keys_and_refuse_to_walk_through_values(smoke_config_file):
    from realrag_core.config.base import ConfigError
    from realrag_core.config.loading import load_config

    cfg = load_config(smoke_config_file, {"mining.k": 3, "retriever.lr_grid": [0.002], "rag.seeds": [5]})
    assert (cfg.mining.k, cfg.retriever.lr_grid, cfg.rag.seeds) == (3, (0.002,), (5,))
    assert load_config(smoke_config_file).mining.k == 1  # the file itself is untouched
    with pytest.raises(ConfigError, match="clip.train.steps is not a mapping"):
        load_config(smoke_config_file, {"clip.train.steps.deeper": 1})
    with pytest.raises(ConfigError, match="mining.k: Input should be greater than or equal to 1"):
        load_config(smoke_config_file, {"mining.k": 0})


def test_retrain_cron_is_checked(smoke_data, tmp_path):
    from realrag_core.config.base import ConfigError
    from realrag_core.config.loading import parse_config

    smoke_data["operations"] = {"retrain_cron": "0 3 * *"}
    with pytest.raises(ConfigError, match="operations.retrain_cron: Value error, a cron expression has five fields"):
        parse_config(smoke_data, tmp_path)
    smoke_data["operations"] = {"retrain_cron": "30 2 * * 1"}
    assert parse_config(smoke_data, tmp_path).operations.retrain_cron == "30 2 * * 1"


def test_rag_seeds_per_protocol(smoke_config_file):
    """rag.seeds_by_protocol replaces rag.seeds for that protocol only, with the same rules on seeds."""
    cfg = load_config(smoke_config_file, {"rag.seeds": [0, 1, 2], "rag.seeds_by_protocol": {"seen_concepts": [4]}})
    assert cfg.rag.seeds_for("seen_concepts") == (4,) and cfg.rag.seeds_for("unseen_concepts") == (0, 1, 2)
    for bad in ({"seen_concepts": [1, 1]}, {"seen_concepts": []}, {"seen": [0]}):
        with pytest.raises(ValueError, match="seeds_by_protocol"):
            load_config(smoke_config_file, {"rag.seeds_by_protocol": bad})


def test_the_profile_check_run_before_the_job_says_why_in_one_line(tmp_path, capsys):
    from realrag_core.config.__main__ import main

    assert main([str(PROJECT_ROOT / "configs" / "smoke.yaml")]) == 0
    assert capsys.readouterr().out.startswith("profile smoke: artifacts in ")
    profile = tmp_path / "mine.yaml"  # the own-folders profile, its class folder never made
    missing = tmp_path / "never_made"
    profile.write_text(f"extends: {PROJECT_ROOT / 'configs' / 'my_folders.yaml'}\nsource:\n  root: {missing}\n")
    assert main([str(profile)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"root {missing} is not a folder" in err

"""A user who ran their own profile and asks `realrag rejects` (or the summary) without naming it is told which
profile answered and which others have runs."""

from pathlib import Path

from realrag_core.cli import main
from realrag_core.config.loading import load_config
from realrag_core.storage.store import profile_hint, profiles_with_runs

SMOKE = Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml"
MARKER = "rejects/image_embeddings.parquet"


def _profiles(tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    for name in ("mine", "idle", "current"):
        (folder / f"{name}.yaml").write_text(f"extends: {SMOKE}\nname: {name}\nartifacts_root: ../art/{name}\n")
    (folder / "broken.yaml").write_text("extends: [not, a, path\n")
    for name in ("mine", "current"):
        (tmp_path / "art" / name / "rejects").mkdir(parents=True)
        (tmp_path / "art" / name / MARKER).write_bytes(b"")
    return folder


def test_other_profiles_with_runs_are_named_and_the_rest_skipped(tmp_path):
    folder = _profiles(tmp_path)
    found = profiles_with_runs(MARKER, tmp_path / "art" / "current", folder)
    assert found == [str(folder / "mine.yaml")]  # not the one answering, not one without a run, not the broken one


def test_the_hint_says_default_only_when_the_profile_was_not_named(tmp_path):
    cfg = load_config(SMOKE)
    named = profile_hint(cfg, MARKER, named=True)
    assert cfg.name in named and "by default" not in named
    assert "by default" in profile_hint(cfg, MARKER, named=False)


def test_rejects_command_names_its_profile(tmp_path, monkeypatch, capsys):
    folder = _profiles(tmp_path)
    monkeypatch.delenv("REALRAG_CONFIG", raising=False)
    rc = main(["rejects", "--config", str(folder / "mine.yaml")])
    out = capsys.readouterr()
    # the marker is an empty file, not Parquet: a clear error after the profile line, not a traceback
    assert out.out.startswith("profile 'mine'") and "by default" not in out.out
    assert rc == 2 and out.err.startswith("realrag: ")


def test_small_validation_sets_are_flagged_with_their_interval():
    from realrag_core.evaluate.summary import small_validation_warnings

    warned = small_validation_warnings({"novel": {"top1": 0.5, "queries": 4}, "known": {"top1": 0.4, "queries": 80}})
    assert len(warned) == 1 and "novel validation has 4 queries" in warned[0]
    lo, hi = (float(x) for x in warned[0].split("interval [")[1].split("]")[0].split(", "))
    assert lo < 0.2 and hi > 0.8  # 2 of 4: the interval spans most of [0, 1]
    assert small_validation_warnings({"novel": {"top1": 0.3, "queries": 30}}) == []


def test_set_up_fetches_the_emoji_world_only_for_profiles_that_draw_from_it(tmp_path):
    from realrag_core.data.demo_setup import profile_needs_world

    configs = SMOKE.parent
    assert profile_needs_world(configs / "demo.yaml")
    assert not profile_needs_world(configs / "smoke.yaml")  # drawn on the fly
    (tmp_path / "folders" / "red apple").mkdir(parents=True)
    own = tmp_path / "own.yaml"
    own.write_text(f"extends: {configs / 'my_folders.yaml'}\nsource:\n  root: folders\n")
    assert not profile_needs_world(own)  # the user's own class folders
    assert profile_needs_world(tmp_path / "missing.yaml")  # does not load: fetch, the job reports the error


def test_needed_exits_3_for_a_profile_without_the_world_and_0_with_it():
    import pytest

    from realrag_core.data.demo_setup import NOT_NEEDED, main as demo_world_main

    for profile, status in (("smoke.yaml", NOT_NEEDED), ("demo.yaml", 0)):
        with pytest.raises(SystemExit) as exit_:
            demo_world_main(["needed", "--config", str(SMOKE.parent / profile)])
        assert exit_.value.code == status and NOT_NEEDED not in (0, 1)  # 1 is what a crash exits with

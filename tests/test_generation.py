"""Stage 2 kernel: resumable G(T) generation with a manifest of embeddings."""

import zlib

import numpy as np
import pytest
from PIL import Image

from realrag_core.clip.bundle import create_untrained, load_clip, save_clip
from realrag_core.generate.generation import generate_for_prompts
from realrag_core.storage.manifest import read_manifest
from realrag_core.data.prompts import Prompt


class CountingGenerator:
    """A stand-in that fits the protocol and counts calls; pixels depend on (prompt, seed) only."""

    generator_id = "counting:1"

    def __init__(self, fail_after=None):
        self.calls, self.fail_after = 0, fail_after

    def generate(self, prompts, references, seeds):
        self.calls += 1
        self.images = getattr(self, "images", 0) + len(prompts)
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("out of memory")
        # few colours on purpose: different prompts may give identical pixels
        return [
            Image.new("RGB", (16, 16), (zlib.crc32(p.encode()) % 2 * 200, s * 40 % 255, 9))
            for p, s in zip(prompts, seeds)
        ]


@pytest.fixture
def encoder(smoke_cfg, tmp_path):
    model, *_ = create_untrained(tmp_path / "clip", smoke_cfg.clip.architecture, seed=0)
    save_clip(model, tmp_path / "clip")
    return load_clip(tmp_path / "clip")


PROMPTS = [Prompt(f"p{i}", f"a thing {i}", f"c{i}", "known", "train", "a {concept}") for i in range(5)]


def test_manifest_rows_files_and_embeddings(encoder, tmp_path):
    report = generate_for_prompts(CountingGenerator(), encoder, PROMPTS, (0, 1), tmp_path, batch_size=4, progress=False)
    assert (report.generated, report.total) == (10, 10)
    m = read_manifest(tmp_path)
    assert m.num_rows == 10 and len(set(m["image_id"].to_pylist())) == 10
    row = m.to_pylist()[0]
    assert (tmp_path / row["path"]).is_file() and row["encoder_id"] == encoder.model_id
    emb = np.stack(m["embedding"].to_numpy(zero_copy_only=False))
    assert emb.shape == (10, encoder.dim) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    expected = encoder.embed_images([Image.open(tmp_path / row["path"])]).numpy()[0]
    assert np.allclose(emb[0], expected, atol=1e-5)  # the stored embedding is of the stored PNG


def test_a_crash_keeps_finished_batches_and_a_rerun_completes(encoder, tmp_path):
    with pytest.raises(RuntimeError, match="out of memory"):
        generate_for_prompts(
            CountingGenerator(fail_after=1), encoder, PROMPTS, (0, 1), tmp_path, batch_size=4, progress=False
        )
    assert read_manifest(tmp_path).num_rows == 4
    gen = CountingGenerator()
    report = generate_for_prompts(gen, encoder, PROMPTS, (0, 1), tmp_path, batch_size=4, progress=False)
    assert (report.generated, report.skipped_done) == (6, 4)
    m = read_manifest(tmp_path)
    assert m.num_rows == 10 and len({(r["prompt_id"], r["seed"]) for r in m.to_pylist()}) == 10
    again = generate_for_prompts(CountingGenerator(), encoder, PROMPTS, (0, 1), tmp_path, progress=False)
    assert again.generated == 0


def test_prompts_that_share_a_text_share_one_generation(encoder, tmp_path):
    """The same template under two protocols: two prompts, two rows, one G(T) per (text, seed)."""
    import dataclasses

    twins = [dataclasses.replace(p, prompt_id=p.prompt_id + "-seen", protocol="seen_concepts") for p in PROMPTS[:3]]
    gen = CountingGenerator()
    report = generate_for_prompts(gen, encoder, PROMPTS + twins, (0, 1), tmp_path, batch_size=4, progress=False)
    assert report.generated == report.total == 16 and report.generator_calls == gen.images == 10
    rows = {(r["prompt_id"], r["seed"]): r for r in read_manifest(tmp_path).to_pylist()}
    assert len(rows) == 16
    for twin in twins:
        for seed in (0, 1):
            a, b = rows[(twin.prompt_id, seed)], rows[(twin.prompt_id[: -len("-seen")], seed)]
            assert (tmp_path / a["path"]).read_bytes() == (tmp_path / b["path"]).read_bytes()
            assert a["embedding"] == b["embedding"] and a["image_id"] != b["image_id"]


def test_a_rag_manifest_of_an_older_version_is_a_clear_error(tmp_path):
    import pyarrow as pa
    import pytest

    from realrag_core.config.stages import IndexConfig
    from realrag_core.storage.manifest import append_part
    from realrag_core.rag.retrieve import generate_arms

    append_part(
        tmp_path, {"arm": ["none"], "prompt_id": ["p0"]}, pa.schema([("arm", pa.string()), ("prompt_id", pa.string())])
    )

    class Gen:
        generator_id = "g"

    with pytest.raises(ValueError, match=r"older version of realrag .*'retriever_seed'.*move that folder away"):
        generate_arms(Gen(), {}, [], [0], table=None, index=IndexConfig(), folder=tmp_path, progress=False)


def test_a_new_image_tower_embeds_the_same_images_again_without_generating_them(smoke_cfg, encoder, tmp_path):
    """A user pulls a new base CLIP (here: another width, so the embeddings do not even have the same size): the
    generator has not changed, so its images are embedded again from their PNG files, and readers take the rows
    of the tower their table was built by."""
    from realrag_core.generate.generation import read_current_generated

    out = tmp_path / "generated"
    generate_for_prompts(CountingGenerator(), encoder, PROMPTS, (0, 1), out, batch_size=4, progress=False)
    wider = smoke_cfg.clip.architecture.model_copy(update={"embed_dim": encoder.dim * 2})
    model, *_ = create_untrained(tmp_path / "clip2", wider, seed=1)
    save_clip(model, tmp_path / "clip2")
    new = load_clip(tmp_path / "clip2")
    assert new.model_id != encoder.model_id and new.dim != encoder.dim
    with pytest.raises(ValueError, match="embeds the same images again, no regeneration"):
        read_current_generated(out, "counting:1", prompts=PROMPTS, seeds=(0, 1), shard_count=1, encoder_id=new.model_id)

    gen = CountingGenerator()
    report = generate_for_prompts(gen, new, PROMPTS, (0, 1), out, batch_size=3, progress=False)
    assert gen.calls == 0 and (report.generated, report.reembedded, report.skipped_done) == (0, 10, 0)
    old_rows = read_current_generated(
        out, "counting:1", prompts=PROMPTS, seeds=(0, 1), shard_count=1, encoder_id=encoder.model_id
    )
    new_rows = read_current_generated(
        out, "counting:1", prompts=PROMPTS, seeds=(0, 1), shard_count=1, encoder_id=new.model_id
    )
    assert new_rows.num_rows == old_rows.num_rows == 10
    assert new_rows["image_id"].to_pylist() == old_rows["image_id"].to_pylist()  # the same images
    assert new_rows["path"].to_pylist() == old_rows["path"].to_pylist()
    emb = np.stack(new_rows["embedding"].to_numpy(zero_copy_only=False))
    assert emb.shape == (10, new.dim)
    first = new_rows.to_pylist()[0]
    expected = new.embed_images([Image.open(out / first["path"]).convert("RGB")]).numpy()[0]
    assert np.allclose(emb[0], expected, atol=1e-5)
    # done for both towers now: nothing generated or embedded again
    again = generate_for_prompts(CountingGenerator(), new, PROMPTS, (0, 1), out, progress=False)
    assert (again.generated, again.reembedded, again.skipped_done) == (0, 0, 10)
    # an image whose file is gone is generated again, not embedded from nothing
    (out / first["path"]).unlink()
    third = load_clip(tmp_path / "clip")  # back to the first tower: its rows are all there, nothing to do
    assert generate_for_prompts(CountingGenerator(), third, PROMPTS, (0, 1), out, progress=False).generated == 0
    model, *_ = create_untrained(tmp_path / "clip3", smoke_cfg.clip.architecture, seed=2)
    save_clip(model, tmp_path / "clip3")
    gen = CountingGenerator()
    report = generate_for_prompts(gen, load_clip(tmp_path / "clip3"), PROMPTS, (0, 1), out, progress=False)
    assert (report.generated, report.reembedded) == (1, 9) and gen.images == 1

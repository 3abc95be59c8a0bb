"""The IP-Adapter routes (SD, SDXL, SD3, FLUX) on tiny random-weight pipelines: the same loading code a real
model id goes through (from_pretrained + load_ip_adapter on the hub layout), the protocol's guarantees, and the
whole smoke pipeline with it. Random weights: plumbing, determinism and conditioning, never quality."""

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from realrag_core.config.base import ConfigError
from realrag_core.generators.kinds.diffusers_ip_adapter import DiffusersGeneratorConfig
from realrag_core.config.loading import load_config, parse_config
from realrag_core.generators.base import Generator
from realrag_core.generators.diffusers_ip import DiffusersIPAdapterGenerator, load_pipeline
from realrag_core.generators.registry import diffusers_generator_id
from realrag_core.testing.tiny_models import write_tiny_sd_ip_adapter, write_tiny_sdxl_ip_adapter
from realrag_core.testing.tiny_transformers import write_tiny_flux_ip_adapter, write_tiny_sd3_ip_adapter

# family: (writer, subfolder, weight file, image encoder: relative to subfolder, or None = the folder the writer made)
FAMILIES = {
    "sd": (write_tiny_sd_ip_adapter, "models", "ip-adapter_sd15.safetensors", "image_encoder"),
    "sdxl": (write_tiny_sdxl_ip_adapter, "sdxl_models", "ip-adapter_sdxl.safetensors", "image_encoder"),
    "sd3": (write_tiny_sd3_ip_adapter, "", "ip-adapter.safetensors", None),
    "flux": (write_tiny_flux_ip_adapter, "", "ip_adapter.safetensors", None),
}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    return write_tiny_sd_ip_adapter(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_models(request, tmp_path_factory):
    write, subfolder, weight, encoder = FAMILIES[request.param]
    pipeline_dir, ip_repo = write(tmp_path_factory.mktemp(f"tiny-{request.param}"))
    return request.param, pipeline_dir, ip_repo, subfolder, weight, encoder or str(ip_repo / "image_encoder")


def _spec(
    tiny_models,
    family="sd",
    subfolder="models",
    weight="ip-adapter_sd15.safetensors",
    encoder="image_encoder",
    **sampling,
):
    pipeline_dir, ip_repo = tiny_models
    return DiffusersGeneratorConfig(
        kind="diffusers_ip_adapter",
        family=family,
        model=str(pipeline_dir),
        ip_adapter={
            "repo": str(ip_repo),
            "scale": 1.0,
            "subfolder": subfolder,
            "weight_name": weight,
            "image_encoder_folder": encoder,
        },
        sampling={"steps": 3, "image_size": 32, "batch_size": 2, **sampling},
    )


PIPELINE_CLASS = {
    "sd": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
    "sd3": "StableDiffusion3Pipeline",
    "flux": "FluxPipeline",
}


def _px(im):
    return np.asarray(im, dtype=np.float32)


RED, BLUE = Image.new("RGB", (48, 48), (230, 20, 20)), Image.new("RGB", (48, 48), (20, 20, 230))


def test_ip_adapter_generator_is_deterministic_and_the_reference_conditions_it(family_models):
    family, pipeline_dir, ip_repo, subfolder, weight, encoder = family_models
    spec = _spec((pipeline_dir, ip_repo), family, subfolder, weight, encoder)
    pipe = load_pipeline(spec)
    assert type(pipe).__name__ == PIPELINE_CLASS[family] and pipe.image_encoder is not None
    gen = DiffusersIPAdapterGenerator(pipe, spec, diffusers_generator_id(spec))
    assert isinstance(gen, Generator)
    prompts, refs, seeds = ["a red circle", "a blue square", "a red circle"], [None, RED, BLUE], [0, 1, 0]
    first = gen.generate(prompts, refs, seeds)
    again = gen.generate(prompts, refs, seeds)
    assert [im.size for im in first] == [(32, 32)] * 3
    assert all(np.array_equal(_px(a), _px(b)) for a, b in zip(first, again))
    # same prompt and seed: the reference alone changes the image, and two references differ from each other
    with_red = gen.generate(["a red circle"], [RED], [0])[0]
    assert np.abs(_px(first[0]) - _px(first[2])).mean() > 1.0
    assert np.abs(_px(with_red) - _px(first[2])).mean() > 1.0
    # each image depends on its own (prompt, reference, seed), not on its batch neighbours or the batch size
    alone = gen.generate(["a blue square"], [RED], [1])[0]
    assert np.abs(_px(alone) - _px(first[1])).max() <= 1.0


def test_prompts_without_a_reference_get_the_base_model(family_models):
    """IP-Adapter scale 0 adds nothing: the `none` arm equals the pipeline without any adapter."""
    import diffusers

    family, pipeline_dir, ip_repo, subfolder, weight, encoder = family_models
    spec = _spec((pipeline_dir, ip_repo), family, subfolder, weight, encoder)
    gen = DiffusersIPAdapterGenerator(load_pipeline(spec), spec, "x")
    base = getattr(diffusers, PIPELINE_CLASS[family]).from_pretrained(spec.model)
    base.set_progress_bar_config(disable=True)
    ours = gen.generate(["a red circle", "a blue square"], None, [3, 4])
    import torch

    theirs = base(
        prompt=["a red circle", "a blue square"],
        num_inference_steps=3,
        guidance_scale=spec.sampling.guidance,
        generator=[torch.Generator("cpu").manual_seed(s) for s in (3, 4)],
        height=32,
        width=32,
    ).images
    assert all(np.abs(_px(a) - _px(b)).max() <= 1.0 for a, b in zip(ours, theirs))


def test_generator_id_names_model_revision_and_adapter_and_tracks_settings(tiny_models):
    spec = _spec(tiny_models)
    gid = diffusers_generator_id(spec)
    assert spec.model in gid and "ip-adapter_sd15.safetensors" in gid and "unpinned" in gid
    assert diffusers_generator_id(spec.model_copy(update={"revision": "abc123"})) != gid
    assert diffusers_generator_id(spec.model_copy(update={"compile": True})) == gid  # speed switches only
    sampling = spec.sampling.model_copy(update={"batch_size": 1})
    moved = spec.model_copy(update={"cache_dir": "/elsewhere", "token_env": "OTHER", "sampling": sampling})
    assert diffusers_generator_id(moved) == gid  # where weights are cached and the batch size never change images
    steps = spec.sampling.model_copy(update={"steps": spec.sampling.steps + 1})
    assert diffusers_generator_id(spec.model_copy(update={"sampling": steps})) != gid


def test_generator_ids_name_the_family_and_its_adapter(family_models):
    family, pipeline_dir, ip_repo, subfolder, weight, encoder = family_models
    spec = _spec((pipeline_dir, ip_repo), family, subfolder, weight, encoder)
    gid = diffusers_generator_id(spec)
    assert gid.startswith(f"diffusers:{family}:{pipeline_dir}@unpinned+{weight}:")
    other = spec.ip_adapter.model_copy(update={"scale": 0.5})
    assert diffusers_generator_id(spec.model_copy(update={"ip_adapter": other})) != gid


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_sd3_and_flux_refuse_an_adapter_that_cannot_be_theirs(family, smoke_data, tmp_path):
    smoke_data["generator"] = {"kind": "diffusers_ip_adapter", "family": family, "model": "some/model"}
    with pytest.raises(ConfigError, match=f"family {family}: h94/IP-Adapter has no adapter for it"):
        parse_config(smoke_data, tmp_path)  # the SD 1.5 defaults of ip_adapter
    smoke_data["generator"]["ip_adapter"] = {"repo": "some/adapter", "weight_name": "ip.safetensors"}
    with pytest.raises(ConfigError, match="image_encoder_folder must name the image encoder's own hub id"):
        parse_config(smoke_data, tmp_path)  # 'image_encoder' would be read relative to the working directory
    smoke_data["generator"]["ip_adapter"]["image_encoder_folder"] = "google/siglip-so400m-patch14-384"
    assert parse_config(smoke_data, tmp_path).generator.family == family
    smoke_data["generator"]["family"] = "sd4"
    with pytest.raises(ConfigError, match="generator.family"):
        parse_config(smoke_data, tmp_path)


@pytest.mark.slow
def test_smoke_pipeline_runs_with_the_tiny_sd_generator(tmp_path, smoke_data):
    """configs/smoke_sd.yaml end to end (all assets), re-rooted in a temporary folder."""
    import dagster as dg

    from pipelines.definitions import ALL_ASSETS
    from assets.partitions import ALL_SHARDS
    from assets.resources import RealRagConfigResource
    from realrag_core.config.base import PROJECT_ROOT
    from realrag_core.storage.manifest import read_manifest

    pipeline_dir, ip_repo = write_tiny_sd_ip_adapter(tmp_path / "tiny-models")
    profile = yaml.safe_load((PROJECT_ROOT / "configs" / "smoke_sd.yaml").read_text())
    profile.update(
        extends=str(PROJECT_ROOT / "configs" / "smoke.yaml"),
        artifacts_root=smoke_data["artifacts_root"],
        source=smoke_data["source"],
    )
    profile["generator"].update(model=str(pipeline_dir))
    profile["generator"]["ip_adapter"].update(repo=str(ip_repo))
    path = tmp_path / "smoke_sd.yaml"
    path.write_text(yaml.safe_dump(profile))
    cfg = load_config(path)
    assert (
        isinstance(cfg.generator, DiffusersGeneratorConfig)
        and cfg.clip == load_config(PROJECT_ROOT / "configs" / "smoke.yaml").clip
    )
    result = dg.materialize(
        ALL_ASSETS, resources={"realrag": RealRagConfigResource(config_path=str(path))}, tags=ALL_SHARDS
    )
    assert result.success
    gid = diffusers_generator_id(cfg.generator)
    generated = read_manifest(cfg.artifacts_root / "generated")
    assert set(generated["generator_id"].to_pylist()) == {gid}
    rag = read_manifest(cfg.artifacts_root / "rag").to_pylist()
    assert {r["arm"] for r in rag} == {"none", "oracle", "clip", "contrastive", "reflective"}
    assert {r["generator_id"] for r in rag} == {gid}
    assert (cfg.artifacts_root / "reports" / "results.parquet").is_file()


def test_later_stages_refuse_a_generator_record_of_another_config(tiny_models, smoke_data, tmp_path):
    import json

    from realrag_core.config.loading import parse_config
    from realrag_core.generators.registry import open_stored_generator
    from realrag_core.storage.store import ArtifactStore

    smoke_data["generator"] = {
        "kind": "diffusers_ip_adapter",
        "model": str(tiny_models[0]),
        "ip_adapter": {"repo": str(tiny_models[1])},
    }
    cfg = parse_config(smoke_data, tmp_path)
    store = ArtifactStore(cfg.artifacts_root)
    with pytest.raises(ValueError, match="materialize the generator asset again"):
        open_stored_generator(cfg, store)  # nothing recorded yet
    other = cfg.generator.model_copy(update={"ip_adapter": cfg.generator.ip_adapter.model_copy(update={"scale": 0.3})})
    store.generator_dir.mkdir(parents=True, exist_ok=True)
    (store.generator_dir / "generator.json").write_text(json.dumps({"generator_id": diffusers_generator_id(other)}))
    with pytest.raises(ValueError, match="materialize the generator asset again"):
        open_stored_generator(cfg, store)


EXTERNAL = '''
from PIL import Image


class Copier:
    """Returns the reference (or a grey image): enough to prove the plumbing of an external generator."""

    def __init__(self, size):
        self.size, self.generator_id = size, f"copier:{size}"

    def generate(self, prompts, references, seeds):
        refs = references or [None] * len(prompts)
        return [(r or Image.new("RGB", (8, 8), (128, 128, 128))).resize((self.size, self.size)) for r in refs]


def make(options, device):
    return Copier(options["size"])


def make_wrong(options, device):
    return object()
'''


def test_external_generators_plug_in_by_factory_and_missing_ones_say_so(smoke_data, tmp_path, monkeypatch):
    from realrag_core.config.loading import parse_config
    from realrag_core.generators.emu2 import GeneratorNotInstalled
    from realrag_core.generators.registry import build_generator, open_stored_generator
    from realrag_core.storage.store import ArtifactStore

    (tmp_path / "my_generators.py").write_text(EXTERNAL)
    monkeypatch.syspath_prepend(str(tmp_path))
    smoke_data["generator"] = {"kind": "external", "factory": "my_generators:make", "options": {"size": 24}}
    cfg = parse_config(smoke_data, tmp_path)
    store = ArtifactStore(cfg.artifacts_root)
    gen, info = build_generator(cfg, None, [], store.generator_dir, store.reports_dir)
    assert info["generator_id"] == "copier:24" and info["source"] == "pretrained"
    [image] = gen.generate(["a red circle"], [RED], [0])
    assert image.size == (24, 24) and image.getpixel((3, 3)) == RED.getpixel((3, 3))
    with pytest.raises(FileNotFoundError):  # the record matches; the base CLIP is what is missing here
        open_stored_generator(cfg, store)
    for factory, error, words in (
        ("realrag_core.generators.emu2:make_generator", GeneratorNotInstalled, "Emu2-Gen is not installed"),
        ("no_such_package.gen:make", GeneratorNotInstalled, "cannot be loaded"),
        ("my_generators:make_wrong", TypeError, "lacks generator_id"),
    ):
        smoke_data["generator"] = {"kind": "external", "factory": factory, "options": {"size": 24}}
        with pytest.raises(error, match=words):
            build_generator(parse_config(smoke_data, tmp_path), None, [], tmp_path / "g", tmp_path)
    smoke_data["generator"]["factory"] = "not a factory"
    with pytest.raises(ValueError, match="generator.factory"):
        parse_config(smoke_data, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["sd3", "flux", "omnigen"])
def test_the_generator_stages_run_through_the_assets_with_every_route(family, smoke_data, tmp_path):
    """The assets that call the generator (its checks, G(T) for mining, the negatives mined from it) with the tiny
    SD3, FLUX and OmniGen models; the SD route runs every asset in the test above."""
    import dagster as dg

    from pipelines.definitions import ALL_ASSETS
    from assets.partitions import ALL_SHARDS
    from assets.resources import RealRagConfigResource
    from realrag_core.testing.tiny_transformers import write_tiny_omnigen
    from realrag_core.storage.manifest import read_manifest

    sampling = {"steps": 3, "image_size": 32, "batch_size": 8}
    if family == "omnigen":
        smoke_data["generator"] = {
            "kind": "diffusers_omnigen",
            "model": str(write_tiny_omnigen(tmp_path / "m")),
            "sampling": {**sampling, "guidance": 2.5},
            "check_samples_per_concept": 1,
        }
    else:
        write, subfolder, weight, encoder = FAMILIES[family]
        pipeline_dir, ip_repo = write(tmp_path / "m")
        smoke_data["generator"] = {
            "kind": "diffusers_ip_adapter",
            "family": family,
            "model": str(pipeline_dir),
            "ip_adapter": {
                "repo": str(ip_repo),
                "subfolder": subfolder,
                "weight_name": weight,
                "scale": 1.0,
                "image_encoder_folder": str(ip_repo / "image_encoder"),
            },
            "sampling": {**sampling, "guidance": 2.0},
            "check_samples_per_concept": 1,
        }
    path = tmp_path / f"smoke_{family}.yaml"
    path.write_text(yaml.safe_dump(smoke_data))
    cfg = load_config(path)
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
        ],
        resources={"realrag": RealRagConfigResource(config_path=str(path))},
        tags=ALL_SHARDS,
    )
    assert result.success
    gid = diffusers_generator_id(cfg.generator)
    assert gid.startswith("diffusers:" + ("omnigen" if family == "omnigen" else family) + ":")
    generated = read_manifest(cfg.artifacts_root / "generated")
    assert set(generated["generator_id"].to_pylist()) == {gid} and generated.num_rows > 0
    checks = json.loads((cfg.artifacts_root / "reports" / "generator.json").read_text())
    assert checks["generator_id"] == gid and "novel/text_and_reference" in checks["checks"]
    import pyarrow.parquet as pq

    negatives = pq.read_table(cfg.artifacts_root / "negatives" / "reflective_negatives.parquet").to_pylist()
    assert negatives and {n["generator_id"] for n in negatives} == {gid}  # mined from this generator's G(T)

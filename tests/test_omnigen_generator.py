"""The OmniGen route on a tiny random-weight OmniGen-class pipeline: from_pretrained on the hub layout, the reference
as an image in the multimodal prompt, the protocol's guarantees. Random weights: plumbing, determinism and
conditioning, never quality."""

import numpy as np
import pytest
import torch
from PIL import Image

from realrag_core.config.base import ConfigError
from realrag_core.generators.kinds.diffusers_omnigen import OmniGenGeneratorConfig
from realrag_core.config.loading import parse_config
from realrag_core.generators.base import Generator
from realrag_core.generators.diffusers_omnigen import OmniGenGenerator, load_omnigen_pipeline
from realrag_core.generators.registry import diffusers_generator_id
from realrag_core.testing.tiny_transformers import write_tiny_omnigen

RED, BLUE = Image.new("RGB", (48, 48), (230, 20, 20)), Image.new("RGB", (48, 48), (20, 20, 230))


@pytest.fixture(scope="module")
def omnigen(tmp_path_factory):
    spec = OmniGenGeneratorConfig(
        kind="diffusers_omnigen",
        model=str(write_tiny_omnigen(tmp_path_factory.mktemp("og"))),
        sampling={"steps": 3, "guidance": 2.5, "image_size": 32, "batch_size": 2},
    )
    pipe = load_omnigen_pipeline(spec)
    return OmniGenGenerator(pipe, spec, diffusers_generator_id(spec))


def _px(im):
    return np.asarray(im, dtype=np.float32)


def test_omnigen_is_deterministic_and_reads_the_reference(omnigen):
    assert type(omnigen.pipe).__name__ == "OmniGenPipeline" and isinstance(omnigen, Generator)
    prompts, refs, seeds = ["a red circle", "a blue square", "a red circle"], [None, RED, BLUE], [0, 1, 0]
    torch.manual_seed(123)
    first = omnigen.generate(prompts, refs, seeds)
    torch.rand(7)  # the global RNG moved: the references' VAE samples must not follow it
    again = omnigen.generate(prompts, refs, seeds)
    assert [im.size for im in first] == [(32, 32)] * 3
    assert all(np.array_equal(_px(a), _px(b)) for a, b in zip(first, again))
    # same prompt and seed: the reference alone changes the image (the tiny random transformer reads its 4 image
    # tokens faintly, but runs are bit-exact, so any difference is the reference's)
    with_red = omnigen.generate(["a red circle"], [RED], [0])[0]
    assert np.abs(_px(first[0]) - _px(first[2])).mean() > 1.0  # none vs a reference
    assert np.abs(_px(with_red) - _px(first[2])).mean() > 0.02  # red vs blue
    # each image depends on its own (prompt, reference, seed), not on its batch neighbours or the batch size
    alone = omnigen.generate(["a blue square"], [RED], [1])[0]
    assert np.abs(_px(alone) - _px(first[1])).max() <= 1.0


def test_omnigen_without_a_reference_is_plain_text_to_image(omnigen, monkeypatch):
    from diffusers import OmniGenPipeline

    base = OmniGenPipeline.from_pretrained(omnigen.spec.model)
    base.set_progress_bar_config(disable=True)
    ours = omnigen.generate(["a red circle", "a blue square"], None, [3, 4])
    theirs = base(
        prompt=["a red circle", "a blue square"],
        num_inference_steps=3,
        guidance_scale=2.5,
        height=32,
        width=32,
        generator=[torch.Generator("cpu").manual_seed(s) for s in (3, 4)],
    ).images
    assert all(np.abs(_px(a) - _px(b)).max() <= 1.0 for a, b in zip(ours, theirs))
    # and with a reference, diffusers' multimodal processor gets OmniGen's image placeholder and the image
    seen, processor = [], omnigen.pipe.multimodal_processor
    process = processor.process_multi_modal_prompt
    monkeypatch.setattr(
        processor,
        "process_multi_modal_prompt",
        lambda text, images: seen.append((text, images)) or process(text, images),
    )
    omnigen.generate(["a red circle"], [RED], [0])
    assert seen[0][0] == "a red circle, like <img><|image_1|></img>" and len(seen[0][1]) == 1


def test_omnigen_config_id_and_errors(omnigen, smoke_data, tmp_path):
    spec = omnigen.spec
    gid = omnigen.generator_id
    assert gid.startswith(f"diffusers:omnigen:{spec.model}@unpinned+input_images:")
    assert diffusers_generator_id(spec.model_copy(update={"image_guidance": 2.0})) != gid
    assert diffusers_generator_id(spec.model_copy(update={"compile": True})) == gid
    smoke_data["generator"] = {"kind": "diffusers_omnigen", "model": "Shitao/OmniGen-v1-diffusers"}
    assert isinstance(parse_config(smoke_data, tmp_path).generator, OmniGenGeneratorConfig)
    smoke_data["generator"]["reference_prompt"] = "{prompt} in the style of the reference"
    with pytest.raises(ConfigError, match=r"reference_prompt: .*<img><\|image_1\|></img> once each"):
        parse_config(smoke_data, tmp_path)
    smoke_data["generator"] = {"kind": "diffusers_omnigen", "model": "m", "ip_adapter": {"repo": "h94/IP-Adapter"}}
    with pytest.raises(ConfigError, match="generator.ip_adapter: unknown key"):
        parse_config(smoke_data, tmp_path)

"""Adapter skeleton for Emu2-Gen (BAAI; the paper's unified multimodal generator), which diffusers does not ship.

Emu2-Gen is a 37B multimodal model whose generation runs through BAAI's own pipeline code (loaded with
``trust_remote_code`` from ``BAAI/Emu2-Gen``), taking an interleaved prompt such as ``[reference image,
"a photo of a Tesla Cybertruck"]``. This module shows where such a model plugs in: a profile names

    generator:
      kind: external
      factory: realrag_core.generators.emu2:make_generator
      options: {model: BAAI/Emu2-Gen, revision: <commit>, dtype: bfloat16}

and the factory returns an object with ``generator_id`` and ``generate(prompts, references | None, seeds)``.
Until the model's code and weights are installed, the factory raises :class:`GeneratorNotInstalled` with what
to install: never a silent fallback to another generator.
"""

from __future__ import annotations

import importlib.util


class GeneratorNotInstalled(RuntimeError):
    """The configured generator's code or weights are not available on this machine."""


REQUIRED = ("emu2_gen",)  # the package that provides BAAI's Emu2-Gen pipeline, once packaged and installed


def make_generator(options: dict, device: str = "cpu"):
    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        raise GeneratorNotInstalled(
            f"Emu2-Gen is not installed: no module {', '.join(missing)}. It needs BAAI's Emu2-Gen pipeline code and "
            f"weights ({options.get('model', 'BAAI/Emu2-Gen')}, about 75 GB in bfloat16, one 80 GB GPU); install "
            "them, then implement generate() here by passing [reference, prompt] as the interleaved input with one "
            "torch.Generator per prompt. No other generator is used in its place."
        )
    raise NotImplementedError("Emu2-Gen's pipeline is importable, but this adapter is a skeleton: see the module doc")

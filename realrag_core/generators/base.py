"""The one protocol every generator sits behind, demo or real (SD/SDXL/Flux with IP-Adapter, OmniGen).

``generate(prompts, references | None, seeds) -> images``: one image per prompt, ``references[i]`` is the
retrieved real image for prompt i (or None for text-only), and image i depends only on (prompt i,
reference i, seed i), never on its batch neighbours, so results are reproducible shard by shard.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from PIL import Image


@runtime_checkable
class Generator(Protocol):
    generator_id: str

    def generate(
        self,
        prompts: Sequence[str],
        references: Sequence[Image.Image | None] | None,
        seeds: Sequence[int],
    ) -> list[Image.Image]: ...


def check_generate_args(prompts, references, seeds) -> list:
    """Validate the protocol's arguments; returns references as a list (all None when not given)."""
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds: one seed per prompt")
    if references is None:
        return [None] * len(prompts)
    if len(references) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(references)} references")
    return list(references)

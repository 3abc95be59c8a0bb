"""Prompts and the evaluation protocol's concept split.

Independently of the generator's known/novel split, the world's concepts are split by seed into
retriever-``train``, ``val`` (ablations are chosen here) and ``eval`` (the results table) concepts,
stratified by known/novel so that both splits are represented in each part. The retriever never trains
on a validation or evaluation concept: the table tests retrieval for prompts it never saw.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .world import World

PROMPTS_FILE = "prompts.parquet"
PROMPT_SCHEMA = pa.schema(
    [("prompt_id", pa.string()), ("prompt", pa.string()), ("concept", pa.string()),
     ("generator_split", pa.string()), ("retriever_split", pa.string()), ("template", pa.string())]
)  # fmt: skip


@dataclass(frozen=True)
class Prompt:
    prompt_id: str
    prompt: str
    concept: str
    generator_split: str  # known | novel
    retriever_split: str  # train | val | eval
    template: str


def prompt_id(prompt: str, concept: str) -> str:
    return hashlib.sha256(f"{concept}\x00{prompt}".encode()).hexdigest()[:16]


def split_concepts(world: World, fractions: tuple[float, float, float], seed: int) -> dict[str, str]:
    """concept -> train | val | eval, by seed, stratified by the generator split. Every part gets at least
    one concept of each generator split when there are at least three of it."""
    out = {}
    rng = random.Random(seed)
    for gsplit in ("known", "novel"):
        concepts = world.concepts_in(gsplit)
        rng.shuffle(concepts)
        n = len(concepts)
        n_val = max(1, round(fractions[1] * n)) if n >= 3 else 0
        n_eval = max(1, round(fractions[2] * n)) if n >= 3 else n
        n_train = n - n_val - n_eval
        if n >= 3 and n_train < 1:
            n_train, n_eval = 1, n - 1 - n_val
        for i, c in enumerate(concepts):
            out[c] = "train" if i < n_train else ("val" if i < n_train + n_val else "eval")
    return out


def build_prompts(world: World, templates: tuple[str, ...], fractions, seed: int) -> list[Prompt]:
    part = split_concepts(world, fractions, seed)
    prompts = []
    for concept in world.concepts:
        for template in templates:
            text = template.format(concept=concept)
            prompts.append(Prompt(prompt_id(text, concept), text, concept, world.concept_split[concept],
                                  part[concept], template))  # fmt: skip
    return prompts


def save_prompts(prompts: list[Prompt], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    cols = {f.name: [getattr(p, f.name) for p in prompts] for f in PROMPT_SCHEMA}
    pq.write_table(pa.Table.from_pydict(cols, schema=PROMPT_SCHEMA), folder / PROMPTS_FILE)
    return folder / PROMPTS_FILE


def load_prompts(folder: Path) -> list[Prompt]:
    path = folder / PROMPTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: materialize the prompts asset first")
    return [Prompt(**row) for row in pq.read_table(path).to_pylist()]

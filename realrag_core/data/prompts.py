"""Prompts and the two evaluation protocols.

``unseen_concepts``: independently of the generator's known/novel split, the world's concepts are split by
seed into retriever-``train``, ``val`` (ablations are chosen here) and ``eval`` (the results table) concepts,
stratified by known/novel so that both splits are represented in each part. The retriever never trains on a
validation or evaluation concept: the table tests retrieval for concepts it never saw.

``seen_concepts`` (the paper's, e.g. Stanford Cars' train/test split): every world concept is a retriever-train
concept; the splits differ by prompt template instead. Training prompts use one set of templates, validation
a held-out set, evaluation a third set the retriever never trained or was chosen on.

Every prompt names its protocol; a retriever is trained and chosen per protocol, on that protocol's prompts.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from realrag_core.data.world import World

PROMPTS_FILE = "prompts.parquet"
PROMPT_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("prompt", pa.string()),
        ("concept", pa.string()),
        ("generator_split", pa.string()),
        ("retriever_split", pa.string()),
        ("template", pa.string()),
        ("protocol", pa.string()),
    ]
)
PROTOCOLS = ("unseen_concepts", "seen_concepts")


def row_protocol(row: dict) -> str:
    """The protocol of a result, paired or prompt row; rows written before protocols existed are unseen_concepts."""
    return row.get("protocol") or "unseen_concepts"


@dataclass(frozen=True)
class Prompt:
    prompt_id: str
    prompt: str
    concept: str
    generator_split: str  # known | novel
    retriever_split: str  # train | val | eval
    template: str
    protocol: str = "unseen_concepts"


def prompt_id(prompt: str, concept: str, protocol: str = "unseen_concepts", split: str = "") -> str:
    """Stable id of a prompt. Under seen_concepts the same text is another prompt per split (a single shared
    template gives three prompts); unseen-concepts ids are those of every earlier version (its stored images
    stay valid)."""
    key = (
        f"{concept}\x00{prompt}" if protocol == "unseen_concepts" else f"{protocol}\x00{split}\x00{concept}\x00{prompt}"
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def in_splits(prompts, splits) -> list["Prompt"]:
    """The prompts of these retriever splits (every protocol), in their stored order."""
    return [p for p in prompts if p.retriever_split in splits]


def of_protocol(prompts, protocol: str, splits=None) -> list["Prompt"]:
    """The prompts of one protocol (and of these retriever splits), in their stored order."""
    return [p for p in prompts if p.protocol == protocol and (splits is None or p.retriever_split in splits)]


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


def build_prompts(
    world: World,
    templates: tuple[str, ...],
    fractions,
    seed: int,
    *,
    protocols: tuple[str, ...] = ("unseen_concepts",),
    seen_templates: dict | None = None,
    seen_eval_concepts: str = "all",
) -> list[Prompt]:
    """``seen_templates``: retriever split -> templates of the seen-concepts protocol (train, val, eval).
    ``seen_eval_concepts``: ``all`` world concepts get seen-concepts evaluation prompts, or only the concepts the
    unseen-concepts split puts in evaluation (``unseen_eval``: both protocols scored on the same concepts)."""
    prompts = []
    needs_split = "unseen_concepts" in protocols or seen_eval_concepts == "unseen_eval"
    part = split_concepts(world, fractions, seed) if needs_split else {}
    if "unseen_concepts" in protocols:
        for concept in world.concepts:
            for template in templates:
                text = template.format(concept=concept)
                prompts.append(
                    Prompt(
                        prompt_id(text, concept), text, concept, world.concept_split[concept], part[concept], template
                    )
                )
    if "seen_concepts" in protocols:
        if not seen_templates:
            raise ValueError("the seen_concepts protocol needs its train/val/eval templates")
        if seen_eval_concepts not in ("all", "unseen_eval"):
            raise ValueError(f"seen_eval_concepts: 'all' or 'unseen_eval', not {seen_eval_concepts!r}")
        for split in ("train", "val", "eval"):
            for concept in world.concepts:
                if split == "eval" and seen_eval_concepts == "unseen_eval" and part[concept] != "eval":
                    continue
                for template in seen_templates[split]:
                    text = template.format(concept=concept)
                    prompts.append(
                        Prompt(
                            prompt_id(text, concept, "seen_concepts", split),
                            text,
                            concept,
                            world.concept_split[concept],
                            split,
                            template,
                            "seen_concepts",
                        )
                    )
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
    return [Prompt(**row) for row in pq.read_table(path).to_pylist()]  # a file without protocol: unseen_concepts

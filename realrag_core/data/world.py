"""Deterministic concept splits and style roles, stored as data with a hash.

``known`` concepts are exactly those the demo generator trains on; every other world concept is
``novel``. The world keeps ``num_concepts`` concepts chosen by seed among those drawn in every role style.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from realrag_core.config.world import WorldConfig
from realrag_core.data.sources.listing import ImageRecord

SPLITS_FILE = "splits.parquet"
META_FILE = "world.json"


@dataclass(frozen=True)
class World:
    concept_split: dict[str, str]  # concept -> "known" | "novel"
    roles: dict  # the roles that decide the world: database and reference styles and their artists
    seed: int
    hash: str
    selection: tuple[str, ...] = ()  # concepts outside the world on which pre-training recipes are chosen

    @property
    def concepts(self) -> list[str]:
        return sorted(self.concept_split)

    def concepts_in(self, split: str) -> list[str]:
        return sorted(c for c, s in self.concept_split.items() if s == split)


def world_hash(concept_split: dict[str, str], roles: dict, seed: int) -> str:
    blob = json.dumps({"splits": sorted(concept_split.items()), "roles": roles, "seed": seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def compute_world(records: Iterable[ImageRecord], cfg: WorldConfig) -> World:
    """Choose the world's concepts and split them into known/novel, from the seed alone."""
    roles = cfg.styles.world_roles()
    role_styles = set(cfg.styles.database)  # pre-training styles never filter the world (issue 16)
    if cfg.styles.reference:
        role_styles.add(cfg.styles.reference)
    styles_of = defaultdict(set)
    for r in records:
        styles_of[r.concept].add(r.style)
    if cfg.require_all_styles:
        eligible = sorted(c for c, s in styles_of.items() if role_styles <= s)
    else:
        eligible = sorted(c for c, s in styles_of.items() if s & set(cfg.styles.database))
    n = cfg.num_concepts or len(eligible)
    if n > len(eligible):
        raise ValueError(
            f"world.num_concepts={n} but only {len(eligible)} concepts are drawn in the database and reference styles"
        )
    rng = random.Random(cfg.seed)
    chosen = sorted(rng.sample(eligible, n))
    order = chosen[:]
    rng.shuffle(order)
    selection = choose_selection(eligible, chosen, cfg)
    if cfg.novel_concepts is not None:  # a pretrained generator: the user says which concepts it cannot know
        absent = sorted(set(cfg.novel_concepts) - set(chosen))
        if absent:
            raise ValueError(
                f"world.novel_concepts names concepts not in the world: {absent[:10]}"
                + (f" and {len(absent) - 10} more" if len(absent) > 10 else "")
            )
        novel = set(cfg.novel_concepts)
        if not novel or novel == set(chosen):
            raise ValueError("world.novel_concepts must leave at least one known and one novel concept")
        split = {c: ("novel" if c in novel else "known") for c in chosen}
        return World(split, roles, cfg.seed, world_hash(split, roles, cfg.seed), selection)
    n_known = cfg.num_known if cfg.num_known is not None else round(cfg.known_fraction * n)
    if cfg.num_known is not None and not 1 <= n_known < n:
        raise ValueError(f"world.num_known={n_known} must leave at least one novel concept among {n}")
    n_known = max(1, min(n - 1, n_known))
    split = {c: ("known" if i < n_known else "novel") for i, c in enumerate(order)}
    return World(split, roles, cfg.seed, world_hash(split, roles, cfg.seed), selection)


def left_out_concepts(records: Iterable[ImageRecord], cfg: WorldConfig) -> dict[str, str]:
    """Concept -> why it cannot be in the world, by ``compute_world``'s rule: with ``require_all_styles`` it lacks
    an image in one of the database and reference styles (a class folder whose held-out draw took none of its
    files, or all of them), otherwise it has none in any database style."""
    database = set(cfg.styles.database)
    needed = database | ({cfg.styles.reference} if cfg.styles.reference else set())
    styles_of = defaultdict(set)
    for r in records:
        styles_of[r.concept].add(r.style)
    out = {}
    for concept, styles in sorted(styles_of.items()):
        missing = (needed - styles) if cfg.require_all_styles else (database if not styles & database else set())
        if missing:
            out[concept] = f"no image in the style(s) {', '.join(sorted(missing))}"
    return out


def choose_selection(eligible: list[str], world: list[str], cfg: WorldConfig) -> tuple[str, ...]:
    """``cfg.selection_concepts`` of the eligible concepts outside the world, by a seed of their own (so the
    world's draw is untouched by it)."""
    if not cfg.selection_concepts:
        return ()
    outside = sorted(set(eligible) - set(world))
    if cfg.selection_concepts >= len(outside):
        raise ValueError(
            f"world.selection_concepts={cfg.selection_concepts} leaves none of the {len(outside)} "
            "concepts outside the world to pre-train on"
        )
    return tuple(sorted(random.Random(f"selection-{cfg.seed}").sample(outside, cfg.selection_concepts)))


def save_world(world: World, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table({"concept": world.concepts, "split": [world.concept_split[c] for c in world.concepts]})
    pq.write_table(table, folder / SPLITS_FILE)
    meta = {
        "hash": world.hash,
        "seed": world.seed,
        "roles": world.roles,
        "selection": list(world.selection),
        "counts": {s: len(world.concepts_in(s)) for s in ("known", "novel")},
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=2))
    return folder / SPLITS_FILE


def load_world(folder: Path) -> World:
    path = folder / SPLITS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: materialize the world_splits asset first")
    table = pq.read_table(path).to_pydict()
    meta = json.loads((folder / META_FILE).read_text())
    split = dict(zip(table["concept"], table["split"]))
    world = World(split, meta["roles"], meta["seed"], meta["hash"], tuple(meta.get("selection", ())))
    if world_hash(split, world.roles, world.seed) != world.hash:
        raise ValueError(f"{path} does not match the hash recorded in {META_FILE}: the split files were edited")
    return world

"""Prompt shards: how ``generated_images`` and ``rag_images`` split their prompts into partitions.

A prompt's shard depends only on its id and the number of shards, and both stages skip finished work and
write one Parquet part per finished batch, so the union of any set of shard runs (one run per shard, a few
shards per run, or all of them in one run) is the unpartitioned run."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")


def shard_names(count: int) -> list[str]:
    if count < 1:
        raise ValueError(f"the number of prompt shards must be at least 1, got {count}")
    width = max(2, len(str(count - 1)))
    return [f"shard-{i:0{width}d}" for i in range(count)]


def shard_of(prompt_id: str, count: int) -> int:
    """Stable across processes and machines (not Python's salted ``hash``)."""
    return int.from_bytes(hashlib.sha256(prompt_id.encode()).digest()[:8], "big") % count


def in_shards(prompts: Sequence[T], selected: Iterable[str], count: int, key=lambda p: p.prompt_id) -> list[T]:
    """The prompts whose shard is one of ``selected`` (shard names out of ``shard_names(count)``)."""
    names = shard_names(count)
    wanted = set(selected)
    unknown = wanted - set(names)
    if unknown:
        raise ValueError(
            f"unknown prompt shards {sorted(unknown)}: this code location has {count} shards "
            f"({names[0]} .. {names[-1]})"
        )
    chosen = {names.index(s) for s in wanted}
    return [p for p in prompts if shard_of(key(p), count) in chosen]


def missing_shards(expected: Iterable[tuple[str, int]], done: Iterable[tuple[str, int]], count: int) -> dict[str, int]:
    """Shard name -> number of expected (prompt id, seed) pairs without a result, for shards that lack any."""
    have = set(done)
    names = shard_names(count)
    out: dict[str, int] = {}
    for prompt_id, seed in expected:
        if (prompt_id, seed) not in have:
            name = names[shard_of(prompt_id, count)]
            out[name] = out.get(name, 0) + 1
    return dict(sorted(out.items()))


def require_complete(
    stage: str, expected: Iterable[tuple[str, int]], done: Iterable[tuple[str, int]], count: int
) -> None:
    """A clear error naming the shards to backfill when a downstream stage would see a partial upstream."""
    missing = missing_shards(expected, done, count)
    if missing:
        listed = ", ".join(f"{name} ({n})" for name, n in list(missing.items())[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        raise ValueError(
            f"{stage} is incomplete: {sum(missing.values())} (prompt, seed) pairs have no image, in "
            f"shards {listed}{more}. Materialize those partitions of {stage} first (a backfill of the "
            f"missing shards in the UI, or on the command line: asset materialize --select {stage} --partition-range "
            f"{shard_names(count)[0]}...{shard_names(count)[-1]})."
        )

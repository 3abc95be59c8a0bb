"""Prompt shards: every prompt in exactly one shard, stable across processes, and a clear error naming the
shards a downstream stage is missing."""

import subprocess
import sys

import pytest

from realrag_core.data.shards import in_shards, missing_shards, require_complete, shard_names, shard_of

IDS = [f"p{i:04d}" for i in range(500)]


def test_shards_partition_the_prompts_and_are_roughly_even():
    names = shard_names(8)
    assert len(set(names)) == 8 and names == sorted(names)
    parts = [in_shards(IDS, [n], 8, key=str) for n in names]
    assert sorted(p for part in parts for p in part) == IDS  # each prompt exactly once
    assert min(map(len, parts)) > 500 / 8 / 2
    assert in_shards(IDS, names, 8, key=str) == IDS  # all shards in one run: every prompt, in order
    assert in_shards(IDS, [], 8, key=str) == []
    assert shard_names(1) == ["shard-00"] and shard_names(150)[-1] == "shard-149"
    with pytest.raises(ValueError, match="at least 1"):
        shard_names(0)
    with pytest.raises(ValueError, match="unknown prompt shards"):
        in_shards(IDS, ["shard-99"], 8, key=str)


def test_a_prompts_shard_does_not_depend_on_the_process():
    code = "from realrag_core.data.shards import shard_of; print([shard_of(f'p{i:04d}', 8) for i in range(50)])"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": seed}
        ).stdout
        for seed in ("1", "2")
    }
    assert outs == {str([shard_of(f"p{i:04d}", 8) for i in range(50)]) + "\n"}


def test_missing_shards_are_named_with_their_counts():
    expected = [(p, s) for p in IDS[:40] for s in (0, 1)]
    done = [e for e in expected if e[0] not in ("p0003", "p0007") and e != ("p0011", 1)]
    missing = missing_shards(expected, done, 4)
    names = shard_names(4)
    want = {}
    for p, n in (("p0003", 2), ("p0007", 2), ("p0011", 1)):
        want[names[shard_of(p, 4)]] = want.get(names[shard_of(p, 4)], 0) + n
    assert missing == dict(sorted(want.items()))
    require_complete("generated_images", expected, expected, 4)  # complete: no error
    with pytest.raises(ValueError, match=r"generated_images is incomplete: 5 \(prompt, seed\) pairs"):
        require_complete("generated_images", expected, done, 4)

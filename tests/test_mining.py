import numpy as np
import pytest

from realrag_core.mining.reflective import mine_negatives


def _unit(rng, n, d=16):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_force(gen, gen_c, table, table_c, k, exclude_concept):
    out_i, out_s = [], []
    for q, c in zip(gen, gen_c):
        scores = [
            (float(q @ row), j) for j, (row, tc) in enumerate(zip(table, table_c)) if not (exclude_concept and tc == c)
        ]
        scores.sort(key=lambda x: -x[0])
        out_i.append([j for _, j in scores[:k]])
        out_s.append([s for s, _ in scores[:k]])
    return np.array(out_i), np.array(out_s)


@pytest.mark.parametrize("policy", ["exclude_concept", "exclude_positive"])
def test_matches_brute_force_across_chunks(policy):
    rng = np.random.default_rng(0)
    table, gen = _unit(rng, 300), _unit(rng, 25)
    table_c = [f"c{i % 30}" for i in range(300)]
    gen_c = [f"c{i % 30}" for i in range(25)]
    want_i, want_s = _brute_force(gen, gen_c, table, table_c, 3, policy == "exclude_concept")
    for chunk_rows, query_block in ((64, 1024), (64, 7), (1000, 4)):  # blocks over rows, queries, both
        got = mine_negatives(
            gen, gen_c, table, table_c, k=3, policy=policy, chunk_rows=chunk_rows, query_block=query_block
        )
        assert np.array_equal(got.indices, want_i)
        assert np.allclose(got.similarities, want_s, atol=1e-6)


def test_a_concept_that_fills_a_block_is_masked_in_full():
    """Where one concept holds most of a block, masking falls back from the few top candidates to the whole
    block: still the brute-force answer."""
    rng = np.random.default_rng(4)
    table, gen = _unit(rng, 400), _unit(rng, 12)
    table_c = ["crowd"] * 300 + [f"c{i % 10}" for i in range(100)]
    gen_c = ["crowd"] * 6 + [f"c{i}" for i in range(6)]
    want_i, want_s = _brute_force(gen, gen_c, table, table_c, 2, True)
    for chunk_rows in (400, 128):
        got = mine_negatives(gen, gen_c, table, table_c, k=2, chunk_rows=chunk_rows, query_block=5)
        assert np.array_equal(got.indices, want_i) and np.allclose(got.similarities, want_s, atol=1e-6)


def test_no_positive_among_negatives_with_the_default_policy():
    rng = np.random.default_rng(1)
    table = _unit(rng, 50)
    table_c = [f"c{i % 5}" for i in range(50)]
    gen = table[:5] + 0.01  # each generated image sits right on a real image of its own concept
    gen /= np.linalg.norm(gen, axis=1, keepdims=True)
    got = mine_negatives(gen, table_c[:5], table, table_c, k=4)
    for row, c in zip(got.indices, table_c[:5]):
        assert all(table_c[j] != c for j in row)
    literal = mine_negatives(gen, table_c[:5], table, table_c, k=1, policy="exclude_positive")
    assert list(literal.indices[:, 0]) == [0, 1, 2, 3, 4]  # the literal policy keeps what the generator copied


def test_errors_are_clear():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="unknown negative policy"):
        mine_negatives(_unit(rng, 2), ["a", "b"], _unit(rng, 4), ["a", "b", "a", "b"], 1, policy="nearest")
    with pytest.raises(ValueError, match="fewer than k"):
        mine_negatives(_unit(rng, 1), ["a"], _unit(rng, 3), ["a", "a", "b"], k=2)


@pytest.mark.parametrize("policy", ["exclude_concept", "exclude_positive"])
def test_incremental_re_mine_equals_a_full_one_after_growth_and_removal(policy):
    from realrag_core.mining.reflective import mine_incremental

    rng = np.random.default_rng(3)
    table, gen = _unit(rng, 400), _unit(rng, 30)
    ids = [f"r{i}" for i in range(400)]
    concepts = [f"c{i % 20}" for i in range(400)]
    gen_ids, gen_c = [f"g{i}" for i in range(30)], [f"c{i % 20}" for i in range(30)]
    old = list(range(300))  # the table at the previous mining
    first = mine_negatives(gen, gen_c, table[old], [concepts[j] for j in old], 3, policy=policy)
    previous = {
        g: [(ids[old[j]], float(s)) for j, s in zip(first.indices[i], first.similarities[i])]
        for i, g in enumerate(gen_ids)
    }
    # the database grows by 100 rows and loses 40 old ones (some of them were negatives of some images)
    removed = set(old[::7][:40]) | {old[first.indices[0, 0]]}
    now = [j for j in range(400) if j not in removed]
    got, stats = mine_incremental(
        gen,
        gen_ids,
        gen_c,
        table=table[now],
        table_ids=[ids[j] for j in now],
        table_concepts=[concepts[j] for j in now],
        previous=previous,
        previous_table_ids={ids[j] for j in old},
        k=3,
        policy=policy,
    )
    want = mine_negatives(gen, gen_c, table[now], [concepts[j] for j in now], 3, policy=policy)
    assert np.array_equal(got.indices, want.indices) and np.allclose(got.similarities, want.similarities, atol=1e-6)
    assert stats["added_rows"] == 100 and stats["full_search_images"] >= 1 and stats["reused_images"] >= 1
    assert stats["reused_images"] + stats["full_search_images"] == 30
    assert stats["compared_pairs"] < 30 * len(now)  # cheaper than a full re-mine
    unchanged, none_added = mine_incremental(
        gen,
        gen_ids,
        gen_c,
        table=table[old],
        table_ids=[ids[j] for j in old],
        table_concepts=[concepts[j] for j in old],
        previous=previous,
        previous_table_ids={ids[j] for j in old},
        k=3,
        policy=policy,
    )
    assert np.array_equal(unchanged.indices, first.indices) and none_added["compared_pairs"] == 0

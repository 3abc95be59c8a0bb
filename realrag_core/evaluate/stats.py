"""Small statistics for honest reporting: every accuracy comes with its n and an interval."""

from __future__ import annotations

import math


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sound at small n and at 0 or n hits)."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


# 95% confidence (two-sided, z = 1.96) and 80% power (z = 0.84): a true difference of 2.8 standard errors is
# detected four times in five.
DETECTABLE_SE = 2.8


def crossed_bootstrap(values, concepts, seeds, reps: int = 2000, seed: int = 0) -> dict:
    """Mean of ``values`` with a 95% percentile interval and a standard error from a bootstrap that resamples
    concepts and retriever seeds together: each draw picks concepts with replacement and, independently, seeds
    with replacement, and averages every value in the chosen (concept, seed) cells (the two-way "pigeonhole"
    bootstrap of Owen 2007, Ann. Appl. Stat. 1(2)). A difference that rests on one lucky training seed is then
    as uncertain as the spread between seeds makes it. A seed of ``None`` (an arm with one model) is one level.

    Returns ``mean``, ``lo``, ``hi``, ``se`` (the bootstrap standard deviation), ``mde`` (the smallest true
    difference detected with 95% confidence and 80% power, ``DETECTABLE_SE`` x se), ``n``, ``concepts`` and
    ``seeds`` (distinct levels)."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    if len(values) != len(concepts) or len(values) != len(seeds):
        raise ValueError(f"{len(values)} values, {len(concepts)} concepts and {len(seeds)} seeds: one each per value")
    if len(values) == 0:
        raise ValueError("no values to bootstrap")
    c_keys = sorted(set(concepts))
    s_keys = sorted(set(seeds), key=lambda s: (s is not None, s))
    ci = _codes(concepts, c_keys)
    si = _codes(seeds, s_keys)
    sums = np.zeros((len(c_keys), len(s_keys)))
    counts = np.zeros_like(sums)
    np.add.at(sums, (ci, si), values)
    np.add.at(counts, (ci, si), 1.0)
    rng = np.random.default_rng(seed)
    draw_c = rng.integers(0, len(c_keys), size=(reps, len(c_keys)))
    draw_s = rng.integers(0, len(s_keys), size=(reps, len(s_keys)))
    # concepts first: (reps, C, S) -> per-seed totals (reps, S), then the drawn seeds
    total_s = sums[draw_c].sum(axis=1)
    count_s = counts[draw_c].sum(axis=1)
    rows = np.arange(reps)[:, None]
    num = total_s[rows, draw_s].sum(axis=1)
    den = count_s[rows, draw_s].sum(axis=1)
    boot = num[den > 0] / den[den > 0]  # a draw of seeds no chosen concept has is empty: left out
    se = float(boot.std(ddof=1)) if len(boot) > 1 else 0.0
    return {
        "mean": float(values.mean()),
        "lo": float(np.percentile(boot, 2.5)),
        "hi": float(np.percentile(boot, 97.5)),
        "se": se,
        "mde": DETECTABLE_SE * se,
        "n": int(len(values)),
        "concepts": len(c_keys),
        "seeds": len(s_keys),
    }


def _codes(items, keys):
    import numpy as np

    index = {k: i for i, k in enumerate(keys)}
    return np.array([index[x] for x in items])

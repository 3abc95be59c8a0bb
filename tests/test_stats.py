import numpy as np
import pytest

from realrag_core.evaluate.metrics import bootstrap_ci
from realrag_core.evaluate.stats import DETECTABLE_SE, crossed_bootstrap, wilson_interval


def test_wilson_interval_matches_the_textbook_case():
    lo, hi = wilson_interval(8, 10)  # Wilson (1927) / Newcombe (1998): 0.4902 .. 0.9433
    assert abs(lo - 0.4902) < 1e-3 and abs(hi - 0.9433) < 1e-3


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(0, 24)
    assert lo == 0.0 and 0.1 < hi < 0.2
    lo, hi = wilson_interval(24, 24)
    assert hi == 1.0 and 0.8 < lo < 0.9


def test_crossed_bootstrap_matches_the_textbook_standard_error_with_one_seed():
    rng = np.random.default_rng(3)
    values = rng.normal(0.0, 1.0, size=400)
    b = crossed_bootstrap(values, [f"c{i}" for i in range(400)], [None] * 400)
    assert b["se"] == pytest.approx(values.std(ddof=1) / np.sqrt(400), rel=0.1)
    assert b["mde"] == pytest.approx(DETECTABLE_SE * b["se"]) and b["n"] == 400 and b["seeds"] == 1
    assert b["lo"] < values.mean() < b["hi"]


def test_crossed_bootstrap_carries_the_spread_between_retriever_seeds():
    """Seed 0 gets every concept right, seed 1 none: resampling concepts alone calls the mean 0.5 certain; the
    crossed bootstrap says two seeds cannot tell."""
    concepts = [f"c{i}" for i in range(100)] * 2
    seeds = [0] * 100 + [1] * 100
    values = np.array([1.0] * 100 + [0.0] * 100)
    lo, hi = bootstrap_ci(values, concepts)
    assert hi - lo < 0.01
    b = crossed_bootstrap(values, concepts, seeds)
    assert b["lo"] == 0.0 and b["hi"] == 1.0 and b["se"] > 0.3 and b["seeds"] == 2 and b["concepts"] == 100


def test_crossed_bootstrap_resamples_concepts_not_rows():
    """Ten rows of one concept are one concept's evidence, not ten."""
    values = np.array([1.0] * 10 + [0.0] * 10)
    b = crossed_bootstrap(values, ["a"] * 10 + ["b"] * 10, [0] * 20)
    assert b["lo"] == 0.0 and b["hi"] == 1.0


def test_a_difference_of_the_detectable_minimum_is_detected_four_times_in_five():
    rng = np.random.default_rng(0)
    n = 200
    probe = crossed_bootstrap(rng.normal(0, 1, n), [str(i) for i in range(n)], [None] * n, reps=500)
    hits = 0
    trials = 200
    for t in range(trials):
        diff = rng.normal(probe["mde"], 1.0, n)
        hits += crossed_bootstrap(diff, [str(i) for i in range(n)], [None] * n, reps=500, seed=t)["lo"] > 0
    assert 0.7 <= hits / trials <= 0.9


def test_crossed_bootstrap_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="one each per value"):
        crossed_bootstrap([1.0, 0.0], ["a"], [0, 0])
    with pytest.raises(ValueError, match="no values"):
        crossed_bootstrap([], [], [])

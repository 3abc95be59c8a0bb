from realrag_core.stats import wilson_interval


def test_wilson_interval_matches_the_textbook_case():
    lo, hi = wilson_interval(8, 10)  # Wilson (1927) / Newcombe (1998): 0.4902 .. 0.9433
    assert abs(lo - 0.4902) < 1e-3 and abs(hi - 0.9433) < 1e-3


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(0, 24)
    assert lo == 0.0 and 0.1 < hi < 0.2
    lo, hi = wilson_interval(24, 24)
    assert hi == 1.0 and 0.8 < lo < 0.9

"""The study's numbers from its votes (issue 20, item 3): simulated raters with planted preferences, votes
stored through the real vote store, numbers checked against counts made here with SQL."""

import random
import sqlite3

import pytest

from realrag_core.config.operations import HumanEvalConfig
from realrag_core.human_eval.tasks import build_tasks
from realrag_core.human_eval.results import study_results
from realrag_core.human_eval.server import VoteStore

ARMS = ("none", "clip", "contrastive", "reflective")


def _tasks():
    rows, real = [], {}
    for split in ("known", "novel"):
        for c in range(6):
            concept = f"{split} thing {c}"
            real[concept] = [f"/real/{split}-{c}.png"]
            for seed in (0, 1):
                for arm in ARMS:
                    rows.append(
                        {
                            "protocol": "unseen_concepts",
                            "arm": arm,
                            "retriever_seed": None,
                            "retriever_id": f"{arm}:v1",
                            "prompt_id": f"p-{split}-{c}",
                            "prompt": f"a {concept}",
                            "concept": concept,
                            "generator_split": split,
                            "seed": seed,
                            "path": f"images/{arm}/{split}-{c}_{seed}.png",
                            "retrieved_id": None if arm == "none" else f"db-{arm}-{c}",
                        }
                    )
    cfg = HumanEvalConfig(pairwise_per_cell=10, rating_per_cell=6, real_or_generated_per_cell=6, gold_fraction=0.2)
    table, _ = build_tasks(rows, real, cfg)
    return table.to_pylist()


def _simulate(tasks, store, raters=12, careless=("zed",), seed=0):
    """Careful raters prefer `reflective` 80% of the time against any arm and are indifferent otherwise; they get
    gold tasks right; rate reflective 6 and the rest 3 for faithfulness; call reflective's images real 40% of the
    time, the others' 10%, real pictures 90%. Careless raters answer at random."""
    rng = random.Random(seed)
    study = tasks[0]["study"]
    for r in [f"r{i}" for i in range(raters)] + list(careless):
        for t in tasks:
            if not t["shown"]:
                continue
            sloppy = r in careless
            if t["kind"] in ("pairwise", "gold"):
                if sloppy:
                    answer = rng.choice(["a", "b"])
                elif t["kind"] == "gold":
                    answer = t["answer"]
                elif "reflective" in (t["a_arm"], t["b_arm"]):
                    side = "a" if t["a_arm"] == "reflective" else "b"
                    answer = side if rng.random() < 0.8 else ("b" if side == "a" else "a")
                else:
                    answer = rng.choice(["a", "b"])
                store.add(study, t["task_id"], r, answer=answer)
            elif t["kind"] == "rating":
                f = rng.randint(1, 7) if sloppy else (6 if t["a_arm"] == "reflective" else 3)
                store.add(study, t["task_id"], r, faithfulness=f, realism=rng.randint(1, 7))
            else:
                p = 0.9 if t["answer"] == "real" else 0.4 if t["a_arm"] == "reflective" else 0.1
                store.add(
                    study, t["task_id"], r, answer="real" if rng.random() < (0.5 if sloppy else p) else "generated"
                )


def _cfg(**kw):
    return HumanEvalConfig(**({"bootstrap": 200} | kw))


def test_a_planted_preference_is_recovered_and_the_numbers_equal_counts_made_with_sql(tmp_path):
    tasks = _tasks()
    store = VoteStore(f"sqlite:///{tmp_path / 'votes.sqlite'}")
    _simulate(tasks, store)
    votes = store.rows(tasks[0]["study"])
    rows, report = study_results(tasks, votes, _cfg(), judge_picks=None)
    assert report["raters_below_gold_threshold"] == ["zed"] and report["excluded_raters"] == ["zed"]
    assert report["gold_accuracy"]["r0"]["accuracy"] == 1.0
    wins = {(r["split"], r["arm"], r["versus"]): r for r in rows if r["metric"] == "win_rate"}
    with sqlite3.connect(tmp_path / "votes.sqlite") as conn:
        conn.execute("CREATE TABLE tasks (task_id TEXT, kind TEXT, split TEXT, a_arm TEXT, b_arm TEXT)")
        conn.executemany(
            "INSERT INTO tasks VALUES (?, ?, ?, ?, ?)",
            [(t["task_id"], t["kind"], t["generator_split"], t["a_arm"], t["b_arm"]) for t in tasks],
        )
        for split in ("known", "novel"):
            for other in ("clip", "contrastive", "none"):
                row = wins[(split, other, "reflective")]  # the pair's first arm, alphabetically
                assert row["lo"] <= 0.2 <= row["hi"]  # reflective is preferred 80% of the time
                # the same share counted here: votes for `other` over all votes on its pairs with reflective
                won, n = conn.execute(
                    "SELECT SUM((v.answer = 'a') = (t.a_arm = ?)), COUNT(*) FROM votes v JOIN tasks t USING (task_id) "
                    "WHERE t.kind = 'pairwise' AND t.split = ? AND v.rater != 'zed' "
                    "AND ((t.a_arm = ? AND t.b_arm = 'reflective') OR (t.b_arm = ? AND t.a_arm = 'reflective'))",
                    (other, split, other, other),
                ).fetchone()
                assert row["votes"] == n > 0 and row["value"] == pytest.approx(won / n)
            bt = {r["arm"]: r["value"] for r in rows if r["metric"] == "bradley_terry" and r["split"] == split}
            assert max(bt, key=bt.get) == "reflective"
            ratings = {r["arm"]: r for r in rows if r["metric"] == "rating_faithfulness" and r["split"] == split}
            assert ratings["reflective"]["value"] == 6 and ratings["clip"]["value"] == 3
            fooling = {
                r["arm"]: r for r in rows if r["metric"] in ("fooling_rate", "called_real") and r["split"] == split
            }
            assert fooling["reflective"]["lo"] <= 0.4 <= fooling["reflective"]["hi"]
            assert fooling["real_pictures"]["value"] > fooling["none"]["value"]
    alpha = report["krippendorff_alpha"]
    assert -1 <= alpha["pairwise"] <= 1 and alpha["rating_faithfulness"] > 0.9  # careful raters agree on ratings


def test_careless_raters_can_be_kept_and_the_judge_is_compared_with_people(tmp_path):
    tasks = _tasks()
    store = VoteStore(f"sqlite:///{tmp_path / 'votes.sqlite'}")
    _simulate(tasks, store)
    votes = store.rows(tasks[0]["study"])
    picks = {
        t["task_id"]: ("a" if t["a_arm"] == "reflective" else "b")
        for t in tasks
        if t["kind"] == "pairwise" and "reflective" in (t["a_arm"], t["b_arm"])
    }
    rows, report = study_results(tasks, votes, _cfg(exclude_failed_raters=False), judge_picks=picks)
    assert report["raters_below_gold_threshold"] == ["zed"] and report["excluded_raters"] == []
    assert report["votes_counted"] == report["votes"] == len(votes)
    judge = report["people_vs_judge"]
    assert judge["tasks"] > 0 and judge["rate"] > 0.8  # people's majority prefers reflective too


def test_unshown_pairs_count_as_ties_and_another_studys_votes_are_refused(tmp_path):
    tasks = _tasks()
    a, b = "clip", "none"
    for t in tasks:  # make one clip/none pair a pair of one file: never shown
        if t["kind"] == "pairwise" and {t["a_arm"], t["b_arm"]} == {a, b}:
            t["shown"] = False
            break
    store = VoteStore(f"sqlite:///{tmp_path / 'votes.sqlite'}")
    _simulate(tasks, store, careless=())
    votes = store.rows(tasks[0]["study"])
    rows, _ = study_results(tasks, votes, _cfg())
    cell = next(
        r
        for r in rows
        if r["metric"] == "win_rate" and r["arm"] == a and r["versus"] == b and r["split"] == t["generator_split"]
    )
    shown = [
        x
        for x in tasks
        if x["kind"] == "pairwise"
        and x["shown"]
        and x["generator_split"] == t["generator_split"]
        and {x["a_arm"], x["b_arm"]} == {a, b}
    ]
    assert cell["tasks"] == len(shown) + 1  # the unshown pair is one more task, a tie
    with pytest.raises(ValueError, match="one study"):
        study_results(tasks, [{**votes[0], "study": "other"}], _cfg())


def test_cells_nobody_judged_are_left_out_and_bradley_terry_counts_votes(tmp_path):
    tasks = _tasks()
    store = VoteStore(f"sqlite:///{tmp_path / 'votes.sqlite'}")
    study = tasks[0]["study"]
    pair = next(t for t in tasks if t["kind"] == "pairwise" and t["shown"])
    store.add(study, pair["task_id"], "solo", answer="a")
    rows, _ = study_results(tasks, store.rows(study), _cfg())
    wins = [r for r in rows if r["metric"] == "win_rate"]
    assert len(wins) == 1 and wins[0]["votes"] == 1  # the other cells have no vote: no made-up 0.5
    bt = [r for r in rows if r["metric"] == "bradley_terry"]
    assert bt and {r["votes"] for r in bt} == {1}
    assert {(r["protocol"], r["split"]) for r in bt} == {(pair["protocol"], pair["generator_split"])}


def test_an_undefined_agreement_says_why_and_the_chart_draws_every_kind_of_result(tmp_path):
    """One rater per task: alpha cannot be computed, and the report says so rather than leaving a bare null; the
    chart holds win-rate, Bradley-Terry, rating and fooling-rate panels, and one saying 'no votes yet'."""
    tasks = _tasks()
    store = VoteStore(f"sqlite:///{tmp_path / 'votes.sqlite'}")
    study = tasks[0]["study"]
    shown = [t for t in tasks if t["shown"] and t["generator_split"] == "novel"]
    for i, t in enumerate(shown):  # every task by a different rater: none is shared
        if t["kind"] == "rating":
            store.add(study, t["task_id"], f"r{i}", faithfulness=5, realism=4)
        elif t["kind"] == "real_or_generated":
            store.add(study, t["task_id"], f"r{i}", answer="real")
        else:
            store.add(study, t["task_id"], f"r{i}", answer="a")
    rows, report = study_results(tasks, store.rows(study), _cfg())
    assert all(v is None for v in report["krippendorff_alpha"].values())
    assert set(report["krippendorff_alpha_undefined"]) == set(report["krippendorff_alpha"])
    assert all("two raters" in why for why in report["krippendorff_alpha_undefined"].values())
    metrics = {r["metric"] for r in rows}
    assert {"win_rate", "bradley_terry", "rating_faithfulness", "fooling_rate"} <= metrics
    # a stratum with no votes at all: the known split of the same protocol
    rows.append({**rows[0], "split": "known", "votes": 0})
    drawn = _drawn(rows, tmp_path / "results.png")
    assert (tmp_path / "results.png").stat().st_size > 0
    assert "no votes yet" in drawn["texts"]
    assert any("mean rating" in t for t in drawn["titles"]) and any("fooling rate" in t for t in drawn["titles"])


def _drawn(rows, path) -> dict:
    """The texts and titles of the chart ``results_chart`` saves for these rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from realrag_core.human_eval.results import results_chart

    drawn = {}
    real_savefig = plt.Figure.savefig

    def keep(fig, *args, **kwargs):
        drawn["texts"] = [t.get_text() for ax in fig.axes for t in ax.texts]
        drawn["titles"] = [ax.get_title() for ax in fig.axes]
        return real_savefig(fig, *args, **kwargs)

    plt.Figure.savefig = keep
    try:
        results_chart(rows, path)
    finally:
        plt.Figure.savefig = real_savefig
    return drawn


def test_a_tie_scores_exactly_zero_and_a_zero_bar_still_shows_its_value(tmp_path):
    tasks = _tasks()
    store = VoteStore(f"sqlite:///{tmp_path / 'votes.sqlite'}")
    study = tasks[0]["study"]
    for t in (t for t in tasks if t["shown"] and t["generator_split"] == "novel"):
        if t["kind"] == "pairwise":
            store.add(study, t["task_id"], "r1", answer="tie")
        elif t["kind"] == "real_or_generated":
            store.add(study, t["task_id"], "r1", answer="generated")
    rows, _ = study_results(tasks, store.rows(study), _cfg())
    bt = [r for r in rows if r["metric"] == "bradley_terry"]
    assert len(bt) == len(ARMS)
    for r in bt:  # every arm equally strong: 0 and bounds of 0, not the centring's +-7e-17 or a -0.0
        assert (r["value"], r["lo"], r["hi"]) == (0.0, 0.0, 0.0) and str(r["value"]) == "0.0"
    fooled = [r for r in rows if r["metric"] == "fooling_rate"]
    assert fooled and all(r["value"] == 0 for r in fooled)
    texts = _drawn(rows, tmp_path / "results.png")["texts"]
    assert texts.count("0.00") >= len(bt) + len(fooled)  # each zero bar is labelled, so none looks missing

"""Human evaluation, part 3: the study's numbers from its votes (issue 20).

Only the votes of one study version enter (a retrain makes another study; old votes stay with theirs). Raters
whose gold-task accuracy is below ``HumanEvalConfig.gold_threshold`` are reported and, with
``exclude_failed_raters``, left out of every number (gold tasks themselves never enter the arm numbers).

- **Win rates** per protocol, known/novel and arm pair: the share of votes preferring each arm, a "can't tell"
  half to each side; a pair of one file (two arms retrieved the same reference: never shown) is a tie. A
  task's score is the mean over its votes; the rate is the mean over tasks.
- **Bradley-Terry** scores per arm (``choix.ilsr_pairwise``, a small ridge ``alpha``): a decided vote is a win,
  a tie half a win each way (entered as one win each way against two for a decided vote); scores are log
  strengths centred on the arms' mean.
- **Ratings**: mean faithfulness and realism (1-7) per arm.
- **Real or generated**: the fooling rate per arm (generated images called real) and the real pictures' rate.
- 95% intervals: a bootstrap over tasks and raters together (both resampled; ``bootstrap`` draws).
- **Agreement**: Krippendorff's alpha between raters (``krippendorff``; nominal for choices, interval for
  ratings), and people against the judge: on pairwise tasks with a majority, the share where the judge picks
  the same image (the judge's pick: the image whose embedding is nearer its caption of the concept).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import numpy as np

CHOICE = {"a": 1.0, "b": 0.0, "tie": 0.5}


def gold_accuracy(tasks: dict[str, dict], votes: Sequence[dict]) -> dict[str, dict]:
    """rater -> {n, correct, accuracy} on gold tasks."""
    out: dict[str, dict] = defaultdict(lambda: {"n": 0, "correct": 0})
    for v in votes:
        t = tasks[v["task_id"]]
        if t["kind"] == "gold":
            out[v["rater"]]["n"] += 1
            out[v["rater"]]["correct"] += int(v["answer"] == t["answer"])
    return {r: {**d, "accuracy": d["correct"] / d["n"] if d["n"] else None} for r, d in sorted(out.items())}


def _bootstrap(values_by_task: dict[str, dict[str, float]], statistic, draws: int, seed: int):
    """``statistic(list of per-task mean values)`` and its 95% interval, resampling tasks and raters."""
    task_ids = sorted(values_by_task)
    raters = sorted({r for v in values_by_task.values() for r in v})

    def value(tids, rater_weights):
        scores = []
        for t in tids:
            votes = values_by_task[t]
            if not votes:  # a tie that was never shown: no rater, its value is fixed
                scores.append(0.5)
                continue
            w = np.array([rater_weights.get(r, 0) for r in votes])
            if w.sum():
                scores.append(float(np.dot(w, list(votes.values())) / w.sum()))
        return statistic(scores) if scores else math.nan

    point = value(task_ids, {r: 1 for r in raters})
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(draws):
        tids = [task_ids[i] for i in rng.integers(0, len(task_ids), len(task_ids))]
        counts = np.bincount(rng.integers(0, len(raters), len(raters)), minlength=len(raters)) if raters else []
        samples.append(value(tids, dict(zip(raters, counts))))
    samples = [s for s in samples if not math.isnan(s)]
    lo, hi = np.percentile(samples, [2.5, 97.5]).tolist() if samples else (math.nan, math.nan)
    return point, lo, hi


def _bradley_terry(pairs: list[tuple[str, str, float]], arms: list[str], alpha: float) -> dict[str, float]:
    import choix

    index = {a: i for i, a in enumerate(arms)}
    data = []
    for a, b, score in pairs:  # score: 1 = a won, 0 = b won, 0.5 = tie
        if score == 0.5:
            data += [(index[a], index[b]), (index[b], index[a])]
        elif score > 0.5:
            data += [(index[a], index[b])] * 2
        else:
            data += [(index[b], index[a])] * 2
    if not data:
        return {a: math.nan for a in arms}
    params = choix.ilsr_pairwise(len(arms), data, alpha=alpha)
    # centred log-strengths; what is left below 1e-12 is the centring's rounding (a tie gave +-7e-17), and
    # adding 0.0 turns the -0.0 that rounding leaves into 0.0
    params = np.round(params - params.mean(), 12) + 0.0
    return {a: float(params[index[a]]) for a in arms}


def _alpha(units: dict[str, dict[str, float]], raters: list[str], level: str) -> tuple[float | None, str | None]:
    """Krippendorff's alpha over the tasks two or more raters judged, or (None, why it is undefined)."""
    import krippendorff

    units = {u: v for u, v in units.items() if len(v) >= 2}
    if not units:
        return None, "no task was judged by two raters yet"
    matrix = np.full((len(raters), len(units)), np.nan)
    for j, votes in enumerate(units.values()):
        for r, value in votes.items():
            matrix[raters.index(r), j] = value
    if len({x for x in matrix[~np.isnan(matrix)]}) < 2:
        return None, "every vote on the shared tasks is the same answer: alpha is undefined"
    return float(krippendorff.alpha(reliability_data=matrix, level_of_measurement=level)), None


def study_results(tasks: Sequence[dict], votes: Sequence[dict], cfg, judge_picks: dict[str, str] | None = None):
    """(rows of the results table, report). ``tasks``: the study's task rows (shown or not); ``votes``: its votes;
    ``judge_picks``: task id -> "a" | "b" for pairwise tasks."""
    by_id = {t["task_id"]: t for t in tasks}
    studies = {t["study"] for t in tasks}
    if len(studies) != 1 or any(v["study"] not in studies for v in votes):
        raise ValueError("tasks and votes must be of one study version")
    gold = gold_accuracy(by_id, votes)
    failed = sorted(r for r, g in gold.items() if g["accuracy"] is not None and g["accuracy"] < cfg.gold_threshold)
    excluded = set(failed) if cfg.exclude_failed_raters else set()
    kept = [v for v in votes if v["rater"] not in excluded]
    rows: list[dict] = []
    draws, seed = cfg.bootstrap, cfg.seed

    def add(protocol, split, metric, arm, value, lo, hi, n_tasks, n_votes, **extra):
        rows.append(
            {
                "protocol": protocol,
                "split": split,
                "metric": metric,
                "arm": arm,
                "value": value,
                "lo": lo,
                "hi": hi,
                "tasks": n_tasks,
                "votes": n_votes,
                **extra,
            }
        )

    strata = sorted({(t["protocol"], t["generator_split"]) for t in tasks})
    votes_of: dict[str, list[dict]] = defaultdict(list)
    for v in kept:
        votes_of[v["task_id"]].append(v)
    bt_pairs: dict[tuple, list] = defaultdict(list)
    for protocol, split in strata:
        here = [t for t in tasks if (t["protocol"], t["generator_split"]) == (protocol, split)]
        # pairwise: per arm pair, arm "x" of the pair is the alphabetically first
        pairs: dict[tuple[str, str], dict[str, dict[str, float]]] = defaultdict(dict)
        for t in here:
            if t["kind"] != "pairwise":
                continue
            x, y = sorted((t["a_arm"], t["b_arm"]))
            flip = t["a_arm"] != x
            values = {
                v["rater"]: (1 - CHOICE[v["answer"]]) if flip else CHOICE[v["answer"]] for v in votes_of[t["task_id"]]
            }
            if t["shown"] and not values:
                continue  # not voted on yet
            pairs[(x, y)][t["task_id"]] = values  # an unshown pair: no votes, a tie
            for value in values.values() or [0.5]:
                bt_pairs[(protocol, split)].append((x, y, value))
        for (x, y), per_task in sorted(pairs.items()):
            n_votes = sum(len(v) for v in per_task.values())
            if not n_votes:  # only pairs of one file, never shown: no one has judged this cell yet
                continue
            point, lo, hi = _bootstrap(per_task, np.mean, draws, seed)
            add(protocol, split, "win_rate", x, point, lo, hi, len(per_task), n_votes, versus=y)
        arms = sorted({a for x, y, _ in bt_pairs[(protocol, split)] for a in (x, y)})
        pairwise_votes = sum(len(votes_of[t["task_id"]]) for t in here if t["kind"] == "pairwise")
        if arms and pairwise_votes:
            point = _bradley_terry(bt_pairs[(protocol, split)], arms, cfg.bt_alpha)
            rng = np.random.default_rng(seed)
            data = bt_pairs[(protocol, split)]
            samples = [
                _bradley_terry([data[i] for i in rng.integers(0, len(data), len(data))], arms, cfg.bt_alpha)
                for _ in range(min(draws, 200))
            ]
            for a in arms:
                lo, hi = np.percentile([s[a] for s in samples], [2.5, 97.5]).tolist()
                add(protocol, split, "bradley_terry", a, point[a], lo, hi, None, pairwise_votes)
        for scale in ("faithfulness", "realism"):
            by_arm: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
            for t in here:
                if t["kind"] == "rating" and votes_of[t["task_id"]]:
                    by_arm[t["a_arm"]][t["task_id"]] = {v["rater"]: float(v[scale]) for v in votes_of[t["task_id"]]}
            for arm, per_task in sorted(by_arm.items()):
                point, lo, hi = _bootstrap(per_task, np.mean, draws, seed)
                add(
                    protocol,
                    split,
                    f"rating_{scale}",
                    arm,
                    point,
                    lo,
                    hi,
                    len(per_task),
                    sum(map(len, per_task.values())),
                )
        fooled: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
        for t in here:
            if t["kind"] == "real_or_generated" and votes_of[t["task_id"]]:
                arm = t["a_arm"] if t["answer"] == "generated" else "real_pictures"
                fooled[arm][t["task_id"]] = {v["rater"]: float(v["answer"] == "real") for v in votes_of[t["task_id"]]}
        for arm, per_task in sorted(fooled.items()):
            point, lo, hi = _bootstrap(per_task, np.mean, draws, seed)
            metric = "called_real" if arm == "real_pictures" else "fooling_rate"
            add(protocol, split, metric, arm, point, lo, hi, len(per_task), sum(map(len, per_task.values())))
    raters = sorted({v["rater"] for v in kept})
    agreement, undefined = {}, {}
    for name, kinds, level, field in (
        ("pairwise", ("pairwise",), "nominal", "answer"),
        ("real_or_generated", ("real_or_generated",), "nominal", "answer"),
        ("rating_faithfulness", ("rating",), "interval", "faithfulness"),
        ("rating_realism", ("rating",), "interval", "realism"),
    ):
        units = defaultdict(dict)
        for v in kept:
            t = by_id[v["task_id"]]
            if t["kind"] in kinds:
                value = v[field]
                units[v["task_id"]][v["rater"]] = {"a": 0.0, "b": 1.0, "tie": 2.0, "real": 0.0, "generated": 1.0}.get(
                    value, value
                )
        agreement[name], why = _alpha(units, raters, level)
        if why:
            undefined[name] = why
    judge = {"tasks": 0, "agree": 0}
    for t in tasks:
        if t["kind"] != "pairwise" or not judge_picks or t["task_id"] not in judge_picks:
            continue
        decided = [v["answer"] for v in votes_of[t["task_id"]] if v["answer"] in ("a", "b")]
        if decided and decided.count("a") != decided.count("b"):
            majority = "a" if decided.count("a") > decided.count("b") else "b"
            judge["tasks"] += 1
            judge["agree"] += int(judge_picks[t["task_id"]] == majority)
    judge["rate"] = judge["agree"] / judge["tasks"] if judge["tasks"] else None
    report = {
        "study": studies.pop(),
        "votes": len(votes),
        "votes_counted": len(kept),
        "raters": sorted({v["rater"] for v in votes}),
        "gold_accuracy": gold,
        "raters_below_gold_threshold": failed,
        "excluded_raters": sorted(excluded),
        "krippendorff_alpha": agreement,
        "krippendorff_alpha_undefined": undefined,
        "people_vs_judge": judge,
        "ties": "a tie (can't tell, or a pair of one file never shown) is half a win to each side",
    }
    return rows, report


def judge_picks(tasks: Sequence[dict], judge, rag_dir, caption: str) -> dict[str, str]:
    """task id -> the side ("a" | "b") whose image the judge puts nearer its caption of the concept, for the
    shown pairwise tasks (what people are compared with)."""
    import torch
    from PIL import Image

    pairwise = [t for t in tasks if t["kind"] == "pairwise" and t["shown"]]
    if not pairwise:
        return {}
    images = [Image.open(rag_dir / t[f"{s}_path"]).convert("RGB") for t in pairwise for s in ("a", "b")]
    with torch.no_grad():
        emb = judge.embed_images(images)
        text = judge.embed_texts([caption.format(concept=t["concept"]) for t in pairwise])
    sims = (emb.reshape(len(pairwise), 2, -1) * text[:, None, :]).sum(-1)
    return {t["task_id"]: "a" if s[0] >= s[1] else "b" for t, s in zip(pairwise, sims.tolist())}


def results_chart(rows: Sequence[dict], path) -> None:
    """One column per protocol and split: win rates per arm pair (95% intervals), Bradley-Terry scores, mean
    7-point ratings (faithfulness and realism) and the real-or-generated fooling rate per arm. Every bar carries
    its value (a 0 would otherwise look like a missing bar). A panel with no votes says so instead of drawing empty
    axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strata = sorted({(r["protocol"], r["split"]) for r in rows})
    cols = max(1, len(strata))
    fig, axes = plt.subplots(4, cols, figsize=(4.8 * cols, 13), squeeze=False)
    for j, stratum in enumerate(strata):
        here = [r for r in rows if (r["protocol"], r["split"]) == stratum and r["votes"]]
        title = f"{stratum[0]} / {stratum[1]}"
        wins = [r for r in here if r["metric"] == "win_rate"]
        ax = axes[0][j]
        if _empty(ax, wins, f"{title}: win rate"):
            bars = ax.barh([f"{r['arm']} vs {r['versus']}" for r in wins], [r["value"] for r in wins], xerr=_err(wins))
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
            ax.axvline(0.5, color="#888", lw=1)
            ax.set_xlim(0, 1)
        bt = [r for r in here if r["metric"] == "bradley_terry"]
        ax = axes[1][j]
        if _empty(ax, bt, "Bradley-Terry score (log strength)"):
            bars = ax.bar([r["arm"] for r in bt], [r["value"] for r in bt], yerr=_err(bt), color="#55a868")
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
        ax = axes[2][j]
        rated = [r for r in here if r["metric"].startswith("rating_")]
        if _empty(ax, rated, "mean rating (1-7)"):
            arms = sorted({r["arm"] for r in rated})
            for k, scale in enumerate(("faithfulness", "realism")):
                sel = {r["arm"]: r for r in rated if r["metric"] == f"rating_{scale}"}
                xs = [i + (k - 0.5) * 0.4 for i, a in enumerate(arms) if a in sel]
                got = [sel[a] for a in arms if a in sel]
                bars = ax.bar(xs, [r["value"] for r in got], width=0.4, yerr=_err(got), label=scale)
                ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
            ax.set_xticks(range(len(arms)), arms)
            ax.set_ylim(1, 7)
            ax.legend(fontsize=8)
        ax = axes[3][j]
        fooled = [r for r in here if r["metric"] in ("fooling_rate", "called_real")]
        if _empty(ax, fooled, "called real (generated: fooling rate)"):
            bars = ax.bar([r["arm"] for r in fooled], [r["value"] for r in fooled], yerr=_err(fooled), color="#c44e52")
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
            ax.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _empty(ax, rows, title: str) -> bool:
    """Title the panel; with no rows, write that no one has voted there yet and hide the axes. True: draw it."""
    ax.set_title(title, fontsize=10)
    if rows:
        return True
    ax.text(0.5, 0.5, "no votes yet", ha="center", va="center", color="#888", transform=ax.transAxes)
    ax.set_axis_off()
    return False


def _err(rows):
    return [[r["value"] - r["lo"] for r in rows], [r["hi"] - r["value"] for r in rows]] if rows else None

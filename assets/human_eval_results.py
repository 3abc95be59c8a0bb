"""The human study's numbers (issue 20): materialize when votes have arrived (README 'Human evaluation')."""

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from .resources import RealRagConfigResource
from realrag_core.clip.bundle import load_clip
from realrag_core.human_eval.tasks import current_study
from realrag_core.human_eval.results import judge_picks, results_chart, study_results
from realrag_core.human_eval.server import VoteStore, votes_url

from ._metadata import inline_image


@dg.asset(
    group_name="realrag",
    deps=["human_eval_tasks", "judge"],
    kinds={"sqlite", "parquet"},
    code_version="1",
    description=(
        "The human study's numbers from the current study's votes (win rates, Bradley-Terry, ratings, fooling rates, gold accuracy, agreement); materialize again when votes arrive. README: \"Human evaluation\"."
    ),
)
def human_eval(context: dg.AssetExecutionContext, realrag: RealRagConfigResource) -> dg.MaterializeResult:
    cfg = realrag.load()
    store = realrag.store()
    folder = current_study(store.human_eval_dir)
    tasks = pq.read_table(folder / "tasks.parquet").to_pylist()
    votes = VoteStore(votes_url(cfg, store)).rows(tasks[0]["study"])
    judge = load_clip(store.judge_dir, cfg.device, cfg.precision)
    picks = judge_picks(tasks, judge, store.rag_dir, cfg.clip.eval_caption)
    rows, report = study_results(tasks, votes, cfg.human_eval, picks)
    if rows:
        pq.write_table(pa.Table.from_pylist(rows), folder / "results.parquet")
        results_chart(rows, folder / "results.png")
    for rater in report["raters_below_gold_threshold"]:
        context.log.warning(
            f"rater {rater}: gold accuracy {report['gold_accuracy'][rater]['accuracy']:.2f} < "
            f"{cfg.human_eval.gold_threshold}" + (" (excluded)" if rater in report["excluded_raters"] else "")
        )
    store.write_report("human_eval", {**report, "results": rows})
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn(name, kind)
            for name, kind in (
                ("protocol", "string"),
                ("split", "string"),
                ("metric", "string"),
                ("arm", "string"),
                ("versus", "string"),
                ("value", "float"),
                ("lo", "float"),
                ("hi", "float"),
                ("votes", "int"),
            )
        ]
    )
    r4 = lambda x: None if x is None else round(float(x), 4)  # noqa: E731
    metadata = {
        "study": report["study"],
        "votes": report["votes"],
        "votes_counted": report["votes_counted"],
        "raters": len(report["raters"]),
        "excluded_raters": ", ".join(report["excluded_raters"]) or "none",
        "people_vs_judge": r4(report["people_vs_judge"]["rate"]),
        "results": dg.MetadataValue.table(
            [
                dg.TableRecord(
                    {
                        "protocol": r["protocol"],
                        "split": r["split"],
                        "metric": r["metric"],
                        "arm": r["arm"],
                        "versus": r.get("versus") or "",
                        "value": r4(r["value"]),
                        "lo": r4(r["lo"]),
                        "hi": r4(r["hi"]),
                        "votes": r["votes"],
                    }
                )
                for r in rows
            ],
            schema=schema,
        ),
    }
    for name, value in report["krippendorff_alpha"].items():
        # an undefined alpha says why (no shared tasks yet, or one answer only) instead of showing nothing
        metadata[f"krippendorff_alpha/{name}"] = (
            r4(value) if value is not None else report["krippendorff_alpha_undefined"][name]
        )
    if (folder / "results.png").is_file() and rows:
        metadata["chart"] = inline_image(folder / "results.png", "human study")
    return dg.MaterializeResult(metadata=metadata)

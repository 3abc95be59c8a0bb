"""Asset checks: each calls a pure check in ``realrag_core.evaluate.checks`` on what the stage stored. Blocking checks stop
the stages below when a bad result would poison them (non-finite or duplicate embeddings, incomplete or stale
negatives, non-finite retriever weights); the rest warn."""

import dagster as dg

from .resources import RealRagConfigResource
from realrag_core.evaluate.checks import (
    Outcome,
    beats_zero_shot_outcome,
    coverage_outcome,
    embeddings_outcome,
    finite_weights_outcome,
    label_conflicts_outcome,
    negatives_outcome,
    results_outcome,
)
from realrag_core.generate.generation import current_generated_rows
from realrag_core.generators.registry import recorded_generator_id
from realrag_core.storage.manifest import read_manifest
from realrag_core.rag.retrieve import ARMS
from realrag_core.storage.store import retriever_key
from realrag_core.embed.table import VECTOR_COLUMN, open_database_table, table_model

from .fid import fid
from .image_embeddings import image_embeddings
from .reflective_negatives import reflective_negatives
from .retriever import contrastive_retriever, retriever


def _result(outcome: Outcome) -> dg.AssetCheckResult:
    severity = dg.AssetCheckSeverity.WARN if outcome.warning_only else dg.AssetCheckSeverity.ERROR
    return dg.AssetCheckResult(
        passed=outcome.passed, severity=severity, description=outcome.summary, metadata=outcome.numbers
    )


def _table(realrag: RealRagConfigResource):
    cfg = realrag.load()
    return open_database_table(cfg)


@dg.asset_check(
    asset=image_embeddings,
    blocking=True,
    description="Every vector finite and unit-norm, every id once, every row written by the table's model.",
)
def embeddings_are_finite_unit_norm_unique(realrag: RealRagConfigResource) -> dg.AssetCheckResult:
    table = _table(realrag)
    model_id, _ = table_model(table)

    def batches():  # streamed record batches: bounded memory on large tables
        query = table.search().select(["id", VECTOR_COLUMN, "model_id"]).limit(None)
        for batch in query.to_batches(65536):
            yield (
                batch.column("id").to_pylist(),
                batch.column(VECTOR_COLUMN).to_numpy(zero_copy_only=False).tolist(),
                batch.column("model_id").to_pylist(),
            )

    return _result(embeddings_outcome(batches(), model_id))


@dg.asset_check(
    asset=image_embeddings,
    description="A row for every valid image the last run saw; extra rows (images since removed) warn.",
)
def embeddings_cover_every_valid_image(realrag: RealRagConfigResource) -> dg.AssetCheckResult:
    return _result(coverage_outcome(_table(realrag).count_rows(), realrag.store().read_report("image_embeddings")))


@dg.asset_check(
    asset=image_embeddings,
    description="No picture (by its bytes) listed under two concepts; warns, never stops (embeddings.label_conflicts).",
)
def no_label_conflicts(realrag: RealRagConfigResource) -> dg.AssetCheckResult:
    return _result(label_conflicts_outcome(realrag.store().read_report("image_embeddings")))


@dg.asset_check(
    asset=reflective_negatives,
    blocking=True,
    description="k negatives per current generated image, ranked by finite similarity, none of the "
    "prompt's concept (default policy), all from the current table version.",
)
def negatives_are_complete_and_current(realrag: RealRagConfigResource) -> dg.AssetCheckResult:
    cfg, store = realrag.load(), realrag.store()
    table = _table(realrag)
    manifest = read_manifest(store.generated_dir)
    generated = (
        []
        if manifest is None
        else current_generated_rows(manifest, recorded_generator_id(cfg, store), table_model(table)[0])
        .select(["image_id"])
        .to_pylist()
    )
    negatives = store.read_negatives()
    return _result(negatives_outcome(negatives, generated, cfg.mining.k, cfg.mining.policy, table.version))


def _weights_check(name: str, asset):
    @dg.asset_check(
        asset=asset,
        name=f"{name}_weights_are_finite",
        blocking=True,
        description="Every tensor of every training seed's checkpoint finite.",
    )
    def check(realrag: RealRagConfigResource) -> dg.AssetCheckResult:
        store = realrag.store()
        return _result(
            finite_weights_outcome(
                sorted(
                    path
                    for protocol in realrag.load().prompts.protocols
                    for path in store.retriever_dir(name, protocol).glob("seed_*/open_clip_model.safetensors")
                )
            )
        )

    return check


def _zero_shot_check(name: str, asset):
    @dg.asset_check(
        asset=asset,
        name=f"{name}_validation_not_below_zero_shot",
        description="Validation top-1 (mean over seeds) at least the zero-shot model's; warns otherwise.",
    )
    def check(realrag: RealRagConfigResource) -> dg.AssetCheckResult:
        store, merged = realrag.store(), {"validation": {}, "validation_zero_shot": {}}
        for protocol in realrag.load().prompts.protocols:  # every protocol's retrievers, splits labelled by it
            report = store.read_report(retriever_key(name, protocol))
            if not report:
                return _result(beats_zero_shot_outcome(None))
            pre = "" if protocol == "unseen_concepts" else f"{protocol}/"
            for part in merged:
                merged[part].update({f"{pre}{split}": m for split, m in report[part].items()})
        return _result(beats_zero_shot_outcome(merged))

    return check


@dg.asset_check(asset=fid, description="Every arm and split has concept accuracy and CLIP-T; every value finite.")
def results_are_complete_and_finite(realrag: RealRagConfigResource) -> dg.AssetCheckResult:
    report = realrag.store().read_report("fid") or {"results": []}
    splits = sorted({r["split"] for r in report["results"]}) or ["known", "novel"]
    cfg = realrag.load()
    arms = [a for a in ARMS if a != "oracle" or cfg.rag.oracle]
    return _result(results_outcome(report["results"], arms, splits, protocols=cfg.prompts.protocols))


ALL_CHECKS = [
    embeddings_are_finite_unit_norm_unique,
    embeddings_cover_every_valid_image,
    no_label_conflicts,
    negatives_are_complete_and_current,
    _weights_check("retriever", retriever),
    _weights_check("contrastive_retriever", contrastive_retriever),
    _zero_shot_check("retriever", retriever),
    _zero_shot_check("contrastive_retriever", contrastive_retriever),
    results_are_complete_and_finite,
]

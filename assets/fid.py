"""Stage 6: the results table (judge-based FID/KID, concept accuracy, CLIP-T, retrieval accuracy)."""

import dagster as dg

from .partitions import SHARD_NAMES
from .resources import RealRagConfigResource
from realrag_core.clip.bundle import load_clip
from realrag_core.clip.pretrained import materialize_pretrained
from realrag_core.rag.retrieve import complete_eval_rows
from realrag_core.evaluate.results import evaluate, results_grid, write_results
from realrag_core.evaluate.reference_set import fid_reference_set
from realrag_core.embed.embedding import reference_listing
from realrag_core.embed.table import open_database_table
from realrag_core.data.world import load_world

from ._metadata import inline_image, readable, results_table


@dg.asset(
    group_name="realrag",
    deps=["rag_images", "judge"],
    kinds={"pytorch", "parquet"},
    pool="gpu",
    code_version="4",
    description=(
        'Stage 6: the results table per protocol, arm and known/novel split (judge FID/KID, Inception FID/KID, concept accuracy, CLIP-T/I, retrieval accuracy) with intervals and paired differences. README: "The assets", "Latest measured demo run".'
    ),
)
def fid(context: dg.AssetExecutionContext, realrag: RealRagConfigResource) -> dg.MaterializeResult:
    cfg = realrag.load()
    store = realrag.store()
    world = load_world(store.world_dir)
    eval_rows = complete_eval_rows(cfg, store, len(SHARD_NAMES))
    judge = load_clip(store.judge_dir, cfg.device, cfg.precision)
    scorer, scorer_name = None, "judge"
    if cfg.metrics.clip_score is not None:
        folder = store.checkpoint_dir("clip_score")
        scorer_name = materialize_pretrained(cfg.metrics.clip_score, folder)["model_name"]
        scorer = load_clip(folder, cfg.device, cfg.precision)
    results, paired, ref_reports, grid = [], [], {}, None
    for protocol in cfg.prompts.protocols:
        rows, eval_prompts = eval_rows[protocol]
        eval_concepts = {p.concept for p in eval_prompts}
        by_split = {s: {c for c in eval_concepts if world.concept_split[c] == s} for s in ("known", "novel")}
        reference, ref_report = {}, {"style": None}
        if cfg.world.styles.reference:
            threshold = cfg.metrics.near_duplicate_threshold
            reference, ref_report = fid_reference_set(
                reference_listing(store.rejects_dir),  # what stage 1 found decodable, in source order
                cfg.world.styles.reference,
                by_split,
                clip=load_clip(store.clip_dir, cfg.device, cfg.precision) if threshold is not None else None,
                table=open_database_table(cfg) if threshold is not None else None,
                index_cfg=cfg.embeddings.index,
                threshold=threshold,
            )
            for d in ref_report["near_duplicates"]:
                context.log.warning(
                    f"reference image {d['path']} is a near-duplicate of database image "
                    f"{d['database_id']} (cosine {d['cosine']:.3f}): left out of FID/KID and CLIP-I"
                )
        else:
            context.log.warning("world.styles.reference is not set: no FID reference set, no FID/KID or CLIP-I")
        part_results, part_paired = evaluate(
            rows,
            store.rag_dir,
            judge,
            world_concepts=world.concepts,
            reference=reference,
            caption=cfg.clip.eval_caption,
            scorer=scorer,
            inception=cfg.metrics.inception,
        )
        results += [{"protocol": protocol, **r} for r in part_results]
        paired += [{"protocol": protocol, **r} for r in part_paired]
        ref_reports[protocol] = ref_report
        if grid is None:
            grid = results_grid(rows, store.rag_dir)
    paths = write_results(results, paired, store.reports_dir, cfg.metrics.min_fid_samples)
    grid.save(store.reports_dir / "results_grid.png")
    first = cfg.prompts.protocols[0]
    store.write_report(
        "fid",
        {
            "results": results,
            "paired": paired,
            "reference_set": ref_reports[first],
            "reference_sets": ref_reports,
            "clip_score_model": scorer_name,
            "inception": cfg.metrics.inception.model_dump(mode="json") if cfg.metrics.inception else None,
        },
    )
    metadata = {
        ("" if r["protocol"] == "unseen_concepts" else f"{r['protocol']}/")
        + f"{r['split']}/{r['arm']}/{r['metric']}": r["value"]
        for r in results
        if r["metric"] in ("concept_acc", "retrieval_acc", "kid_judge", "fid", "kid")
    }
    metadata.update(results_table(results, paired))
    ref_report = ref_reports[first]
    metadata["reference_set"] = dg.MetadataValue.json(
        {k: v for k, v in ref_report.items() if k != "near_duplicates"}
        | {"near_duplicates": len(ref_report.get("near_duplicates", []))}
    )
    metadata["protocols"] = ", ".join(cfg.prompts.protocols)
    metadata["clip_score_model"] = scorer_name
    return dg.MaterializeResult(
        metadata=readable(
            {
                **metadata,
                "results": dg.MetadataValue.md(paths["md"].read_text()),
                "chart": inline_image(paths["chart"], "judge concept accuracy by arm"),
                "grid": inline_image(grid, "prompt | no-RAG | retrieved | RAG"),
                "results_path": dg.MetadataValue.path(str(paths["parquet"])),
            }
        )
    )

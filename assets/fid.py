"""Stage 6: the results table (judge-based FID/KID, concept accuracy, CLIP-T, retrieval accuracy)."""

import dagster as dg

from pipelines.resources import RealRagConfigResource
from realrag_core.clip_backbone import load_clip
from realrag_core.clip_pretrain import load_images
from realrag_core.prompts import load_prompts
from realrag_core.manifest import read_manifest
from realrag_core.rag import current_rows
from realrag_core.results import evaluate, results_grid, write_results
from realrag_core.sources import iter_records
from realrag_core.world import load_world

from ._metadata import inline_image


@dg.asset(
    group_name="realrag",
    deps=["rag_images", "judge"],
    kinds={"pytorch", "parquet"},
    code_version="2",
    description=(
        "Stage 6. Scores every arm on the evaluation prompts, separately for generator-known and -novel concepts: "
        "torchmetrics FrechetInceptionDistance and KernelInceptionDistance with the judge as feature extractor "
        "(reported as fid_judge / kid_judge; the reference set is the held-out artist style), the judge's top-1 "
        "concept accuracy, CLIP-T with the judge's towers, retrieval accuracy, the retrieved style mix, and "
        "copy_* rows scoring the retrieved image itself. Bootstrap 95% intervals over prompts and paired "
        "differences between arms on the same prompts and seeds. Writes reports/results.parquet, results.md, "
        "results.png and results_grid.png."
    ),
)
def fid(context: dg.AssetExecutionContext, realrag: RealRagConfigResource) -> dg.MaterializeResult:
    cfg = realrag.load()
    store = realrag.store()
    world = load_world(store.world_dir)
    manifest = read_manifest(store.rag_dir)
    if manifest is None:
        raise FileNotFoundError("no RAG images: materialize rag_images first")
    made = store.read_report("rag_images")
    if not made or "retrievers" not in made:
        raise FileNotFoundError("rag_images has no report of its generator and retrievers: materialize rag_images")
    rows = current_rows(manifest.to_pylist(), made["generator_id"], {(a, s): i for a, s, i in made["retrievers"]})
    eval_concepts = {p.concept for p in load_prompts(store.world_dir) if p.retriever_split in cfg.rag.retriever_splits}
    ref_style = cfg.world.styles.reference
    held_out = [r for r in iter_records(cfg.source) if r.style == ref_style and r.concept in eval_concepts]
    reference = {split: load_images([r for r in held_out if world.concept_split[r.concept] == split])[0]
                 for split in ("known", "novel")}  # fmt: skip
    results, paired = evaluate(rows, store.rag_dir, load_clip(store.judge_dir, cfg.device), world.concepts,
                               reference, cfg.clip.eval_caption)  # fmt: skip
    paths = write_results(results, paired, store.reports_dir)
    grid = results_grid(rows, store.rag_dir)
    grid.save(store.reports_dir / "results_grid.png")
    store.write_report("fid", {"results": results, "paired": paired})
    metadata = {f"{r['split']}/{r['arm']}/{r['metric']}": r["value"] for r in results
                if r["metric"] in ("concept_acc", "retrieval_acc", "kid_judge")}  # fmt: skip
    return dg.MaterializeResult(metadata={
        **metadata,
        "results": dg.MetadataValue.md(paths["md"].read_text()),
        "chart": inline_image(paths["chart"], "judge concept accuracy by arm"),
        "grid": inline_image(grid, "prompt | no-RAG | retrieved | RAG"),
        "results_path": dg.MetadataValue.path(str(paths["parquet"])),
    })  # fmt: skip

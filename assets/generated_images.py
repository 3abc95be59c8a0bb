"""Stage 2: what the generator makes of each retriever prompt on its own, G(T)."""

import dagster as dg

from .partitions import PROMPT_SHARDS, SHARD_BACKFILL, SHARD_NAMES, selected_shards
from .resources import RealRagConfigResource
from realrag_core.generate.generation import current_generated_rows, generate_for_prompts
from realrag_core.storage.manifest import read_manifest
from realrag_core.generators.registry import open_stored_generator
from realrag_core.evaluate.plots import image_grid
from realrag_core.data.prompts import in_splits, load_prompts
from realrag_core.data.shards import in_shards

from ._metadata import inline_image, readable


@dg.asset(
    group_name="realrag",
    deps=["generator", "prompts", "clip_backbone"],
    kinds={"pytorch", "parquet"},
    pool="gpu",
    partitions_def=PROMPT_SHARDS,
    backfill_policy=SHARD_BACKFILL,
    code_version="1",
    description=(
        'Stage 2: G(T) without retrieval for the retriever\'s train and validation prompts, resumable, partitioned by prompt shard. README: "The assets".'
    ),
)
def generated_images(context: dg.AssetExecutionContext, realrag: RealRagConfigResource) -> dg.MaterializeResult:
    cfg = realrag.load()
    store = realrag.store()
    gen, info, encoder = open_stored_generator(cfg, store)
    shards = selected_shards(context)
    prompts = in_splits(load_prompts(store.world_dir), cfg.generation.retriever_splits)
    prompts = in_shards(prompts, shards, len(SHARD_NAMES))
    report = generate_for_prompts(
        gen, encoder, prompts, cfg.generation.seeds, store.generated_dir, batch_size=cfg.generator.sampling.batch_size
    )
    manifest = read_manifest(store.generated_dir)
    store.write_report("generated_images", {**report.__dict__, "generator_id": info["generator_id"]})
    from PIL import Image

    ids = {p.prompt_id for p in prompts}
    current = current_generated_rows(manifest, info["generator_id"], encoder.model_id) if manifest else None
    columns = current.select(["prompt_id", "path", "concept"]).to_pylist() if current is not None else []
    rows = [r for r in columns if r["prompt_id"] in ids]
    sample = rows[:16]
    grid = image_grid([Image.open(store.generated_dir / r["path"]) for r in sample], [r["concept"] for r in sample], 8)
    return dg.MaterializeResult(
        metadata=readable(
            {
                "generated": report.generated,
                "skipped_done": report.skipped_done,
                "reembedded": report.reembedded,
                "total": report.total,
                "generator_calls": report.generator_calls,
                "seconds": report.seconds,
                "generator_id": info["generator_id"],
                "encoder_id": encoder.model_id,
                "dagster/row_count": len(rows),
                "shards": ", ".join(shards),
                "prompts": len(prompts),
                "sample": inline_image(grid, "G(T) samples"),
            }
        )
    )

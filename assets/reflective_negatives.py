"""Stage 3: the reflective negatives, the real images nearest to what the generator already makes."""

import collections
import time

import dagster as dg
import numpy as np
import pyarrow.parquet as pq

from .partitions import SHARD_NAMES
from .resources import RealRagConfigResource
from realrag_core.generate.generation import read_current_generated
from realrag_core.generators.registry import recorded_generator_id
from realrag_core.mining.reflective import (
    mine_incremental,
    mine_negatives,
    negatives_table,
    negatives_version,
    previous_negatives,
)
from realrag_core.data.prompts import in_splits, load_prompts
from realrag_core.embed.table import VECTOR_COLUMN, ids_at_version, open_database_table, read_rows, table_model
from ._metadata import readable


@dg.asset(
    group_name="realrag",
    deps=["generated_images", "image_embeddings"],
    kinds={"parquet"},
    code_version="3",
    description=(
        'Stage 3: for each G(T), the k nearest real database images (what the generator already knows), mined into Parquet; incremental when the table grows. README: "The assets".'
    ),
)
def reflective_negatives(context: dg.AssetExecutionContext, realrag: RealRagConfigResource) -> dg.MaterializeResult:
    cfg = realrag.load()
    store = realrag.store()
    prompts = in_splits(load_prompts(store.world_dir), cfg.generation.retriever_splits)
    table = open_database_table(cfg)
    model_id, _ = table_model(table)
    manifest = read_current_generated(
        store.generated_dir,
        recorded_generator_id(cfg, store),
        prompts=prompts,
        seeds=cfg.generation.seeds,
        shard_count=len(SHARD_NAMES),
        encoder_id=model_id,
    )
    rows = read_rows(table)
    generated = np.stack(manifest["embedding"].to_numpy(zero_copy_only=False))
    vectors = np.stack(rows[VECTOR_COLUMN].to_numpy(zero_copy_only=False))
    previous = store.read_negatives()
    old_ids = (
        ids_at_version(cfg.lancedb_uri, cfg.embeddings.table_name, previous[0]["table_version"])
        if previous and cfg.mining.incremental
        else None
    )
    start = time.perf_counter()
    if old_ids is not None:
        negatives, stats = mine_incremental(
            generated,
            manifest["image_id"].to_pylist(),
            manifest["concept"],
            table=vectors,
            table_ids=rows["id"],
            table_concepts=rows["concept"],
            previous=previous_negatives(previous, cfg.mining.k, cfg.mining.policy, model_id),
            previous_table_ids=old_ids,
            k=cfg.mining.k,
            policy=cfg.mining.policy,
        )
        stats["mode"] = "incremental"
    else:
        negatives = mine_negatives(
            generated,
            manifest["concept"].to_pylist(),
            vectors,
            rows["concept"].to_pylist(),
            cfg.mining.k,
            policy=cfg.mining.policy,
        )
        stats = {"mode": "full", "compared_pairs": len(generated) * len(vectors)}
    stats["mine_seconds"] = round(time.perf_counter() - start, 3)
    context.log.info(f"re-mined {stats['mode']}: {stats}")
    out = negatives_table(manifest, rows, negatives, table.version, cfg.mining.policy)
    pq.write_table(out, store.negatives_path)
    same = sum(a == b for a, b in zip(out["concept"].to_pylist(), out["negative_concept"].to_pylist()))
    styles = collections.Counter(out["negative_style"].to_pylist())
    report = {
        "rows": out.num_rows,
        "generated_images": manifest.num_rows,
        "k": cfg.mining.k,
        "policy": cfg.mining.policy,
        "table_version": table.version,
        "negatives_version": negatives_version(out.to_pylist()),
        "same_concept_negatives": same,
        "mean_similarity": float(np.mean(out["similarity"].to_numpy())),
        "negative_styles": dict(styles),
        **{f"mining/{k}": v for k, v in stats.items()},
    }
    store.write_report("reflective_negatives", report)
    return dg.MaterializeResult(
        metadata=readable(
            {
                **{k: v for k, v in report.items() if k != "negative_styles"},
                **{f"negative_styles/{k}": v for k, v in styles.items()},
                "dagster/row_count": out.num_rows,
                "path": dg.MetadataValue.path(str(store.negatives_path)),
            }
        )
    )

"""Stage 1: real database images -> CLIP embeddings in a LanceDB table."""

import dagster as dg

from .resources import RealRagConfigResource
from realrag_core.clip.bundle import load_clip
from realrag_core.embed.embedding import embed_source
from realrag_core.embed.reader import Scope
from realrag_core.data.world import load_world

from ._metadata import IO_RETRY, readable


@dg.asset(
    group_name="realrag",
    deps=["clip_backbone", "world_splits"],
    kinds={"lancedb", "pytorch"},
    pool="gpu",
    retry_policy=IO_RETRY,
    code_version="2",  # 2: also checks the held-out reference images and lists them
    description=(
        'Stage 1: the database images embedded into the LanceDB table (resumable, deduplicated by content); every entry that cannot become a row is a reject with its reason; the held-out reference images are checked the same way (not embedded). README: "The assets", "Reliability".'
    ),
)
def image_embeddings(context: dg.AssetExecutionContext, realrag: RealRagConfigResource) -> dg.MaterializeResult:
    cfg = realrag.load()
    store = realrag.store()
    world = load_world(store.world_dir)
    reference = frozenset({cfg.world.styles.reference} - {None})  # held out: checked, never embedded
    scope = Scope(frozenset(cfg.world.styles.database), world.concept_split, reference)
    report = embed_source(
        cfg.source,
        scope,
        load_clip(store.clip_dir, cfg.device, cfg.precision),
        uri=cfg.lancedb_uri,
        cfg=cfg.embeddings,
        rejects_path=store.rejects_dir / "image_embeddings.parquet",
    )
    metadata = report.as_metadata()
    store.write_report("image_embeddings", metadata)
    metadata["world_hash"] = world.hash
    metadata["table_uri"] = cfg.lancedb_uri
    metadata["rejects_path"] = dg.MetadataValue.path(report.rejects_path)
    metadata["label_conflicts_path"] = dg.MetadataValue.path(report.label_conflicts_path)
    metadata["reference_path"] = dg.MetadataValue.path(report.reference_path)
    metadata["dagster/row_count"] = report.rows
    if report.rejected:
        kinds = ", ".join(f"{n} {kind}" for kind, n in report.rejects_by_reason.items())
        context.log.warning(f"{report.rejected} entries rejected ({kinds}): see {report.rejects_path}")
    if report.label_conflicts:
        context.log.warning(
            f"{report.label_conflicts} picture(s) listed under two or more concepts "
            f"(embeddings.label_conflicts: {cfg.embeddings.label_conflicts}): see {report.label_conflicts_path}"
        )
    return dg.MaterializeResult(metadata=readable(metadata))

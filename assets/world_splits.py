"""Foundation: the world's concepts, their generator split (known/novel) and the style roles, as data."""

import dagster as dg

from .resources import RealRagConfigResource
from realrag_core.data.sources.registry import iter_records
from realrag_core.data.world import compute_world, save_world
from ._metadata import readable


@dg.asset(
    group_name="foundation",
    deps=["image_source"],
    kinds={"parquet"},
    code_version="1",
    description=(
        'The world\'s concepts by seed, split into known (the generator trains on them) and novel, the selection concepts outside it, and the style roles; stored with a hash. README: "The assets".'
    ),
)
def world_splits(context: dg.AssetExecutionContext, realrag: RealRagConfigResource) -> dg.MaterializeResult:
    cfg = realrag.load()
    world = compute_world(iter_records(cfg.source), cfg.world)
    store = realrag.store()
    path = save_world(world, store.world_dir)
    counts = {
        "concepts": len(world.concepts),
        "known": len(world.concepts_in("known")),
        "novel": len(world.concepts_in("novel")),
    }
    store.write_report("world_splits", {"hash": world.hash, **counts})
    return dg.MaterializeResult(
        metadata=readable(
            {
                "world_hash": world.hash,
                **counts,
                "database_styles": ", ".join(cfg.world.styles.database),
                "clip_pretrain_styles": ", ".join(cfg.world.styles.clip_pretrain),
                "reference_style": cfg.world.styles.reference or "none",
                "novel_concepts": ", ".join(world.concepts_in("novel")[:40]),
                "path": dg.MetadataValue.path(str(path)),
            }
        )
    )

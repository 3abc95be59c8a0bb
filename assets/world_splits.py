"""Foundation: the world's concepts, their generator split (known/novel) and the style roles, as data."""

import dagster as dg

from .resources import RealRagConfigResource
from realrag_core.data.sources.registry import iter_records
from realrag_core.data.world import compute_world, left_out_concepts, save_world
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
    records = list(iter_records(cfg.source))
    world = compute_world(records, cfg.world)
    left_out = left_out_concepts(records, cfg.world)
    if left_out and cfg.world.num_concepts is None:  # every class was asked for: say which are not in the world
        shown = "; ".join(f"{c}: {why}" for c, why in list(left_out.items())[:20])
        context.log.warning(
            f"{len(left_out)} concept(s) of the source left out of the world, their images unused: {shown}"
            + (f"; and {len(left_out) - 20} more (reports/world_splits.json)" if len(left_out) > 20 else "")
        )
    store = realrag.store()
    path = save_world(world, store.world_dir)
    counts = {
        "concepts": len(world.concepts),
        "known": len(world.concepts_in("known")),
        "novel": len(world.concepts_in("novel")),
    }
    counts["left_out_concepts"] = len(left_out)
    store.write_report("world_splits", {"hash": world.hash, **counts, "left_out": left_out})
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

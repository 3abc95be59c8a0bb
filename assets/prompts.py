"""The prompts, tagged with their concept, generator split and retriever split."""

import collections

import dagster as dg

from .resources import RealRagConfigResource
from realrag_core.data.prompts import build_prompts, save_prompts
from realrag_core.data.world import load_world
from ._metadata import readable


@dg.asset(
    group_name="foundation",
    deps=["world_splits"],
    kinds={"parquet"},
    code_version="2",
    description=(
        'Prompts from templates over the world\'s concepts, tagged with generator split, retriever split and protocol (unseen_concepts, seen_concepts). README: "The assets".'
    ),
)
def prompts(context: dg.AssetExecutionContext, realrag: RealRagConfigResource) -> dg.MaterializeResult:
    cfg = realrag.load()
    store = realrag.store()
    items = build_prompts(
        load_world(store.world_dir),
        cfg.prompts.templates,
        cfg.prompts.split_fractions,
        cfg.prompts.seed,
        protocols=cfg.prompts.protocols,
        seen_templates=cfg.prompts.seen_concepts.by_split(),
        seen_eval_concepts=cfg.prompts.seen_concepts.eval_concepts,
    )
    path = save_prompts(items, store.world_dir)
    counts = collections.Counter(
        f"{p.retriever_split}/{p.generator_split}"
        if p.protocol == "unseen_concepts"
        else f"{p.protocol}/{p.retriever_split}/{p.generator_split}"
        for p in items
    )
    store.write_report("prompts", {"prompts": len(items), **counts})
    return dg.MaterializeResult(
        metadata=readable(
            {
                "prompts": len(items),
                **{f"prompts/{k}": v for k, v in sorted(counts.items())},
                "path": dg.MetadataValue.path(str(path)),
                "dagster/row_count": len(items),
            }
        )
    )

"""Foundation: the retriever's base CLIP. Demo: a small open_clip model pre-trained here with ClipLoss."""

import dagster as dg

from .resources import RealRagConfigResource
from realrag_core.clip.demo_pretrain import build_demo_clip
from realrag_core.data.world import load_world

from ._metadata import RetrainConfig, flat, readable, trained_model_metadata


@dg.asset(
    group_name="foundation",
    deps=["world_splits"],
    kinds={"pytorch", "safetensors"},
    pool="gpu",
    code_version="1",
    description=(
        "The base CLIP the retriever starts from. Demo: an open_clip model built by open_clip's factory from a "
        "custom config and pre-trained contrastively (open_clip ClipLoss) on artists that draw neither the database "
        "nor the reference, plus the database and reference artists' images of concepts outside the world, so it is "
        "a genuine zero-shot retriever on the database images of the world, which it never saw. Shipped weights "
        "(weights/demo_clip) are used when their training key matches; otherwise it trains. Metadata: text->image "
        "top-1/top-5 concept accuracy on the world's database images and on the selection concepts' (where its "
        "recipe was chosen)."
    ),
)
def clip_backbone(
    context: dg.AssetExecutionContext, realrag: RealRagConfigResource, config: RetrainConfig
) -> dg.MaterializeResult:
    cfg = realrag.load()
    store = realrag.store()
    info = build_demo_clip(cfg, load_world(store.world_dir), store.clip_dir, store.reports_dir, config.force_retrain)
    store.write_report("clip_backbone", info)
    return dg.MaterializeResult(
        metadata=readable(
            {
                **trained_model_metadata(info, store.reports_dir / "clip_backbone_loss.png"),
                "eval_images": info["eval_images"],
                **flat("zero_shot", info["zero_shot"]),
                **flat(
                    "selection",
                    {k: v for k, v in (info.get("selection") or {}).items() if k in ("top1", "top5", "queries")},
                ),
                "checkpoint": dg.MetadataValue.path(str(store.clip_dir)),
            }
        )
    )

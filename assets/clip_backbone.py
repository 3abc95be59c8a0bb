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
        'The base CLIP the retrievers start from (demo: pre-trained here, never on the database\'s images of world concepts; or a pretrained open_clip model) and its zero-shot retrieval. README: "The assets", "The models the measurement stands on".'
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

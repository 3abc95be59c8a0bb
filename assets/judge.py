"""Foundation: the evaluation judge, an open_clip model used only to score results."""

import dagster as dg

from .resources import RealRagConfigResource
from realrag_core.clip.demo_pretrain import build_judge
from realrag_core.data.world import load_world

from ._metadata import RetrainConfig, flat, readable, trained_model_metadata


@dg.asset(
    group_name="foundation",
    deps=["world_splits"],
    kinds={"pytorch", "safetensors"},
    pool="gpu",
    code_version="1",
    description=(
        "The evaluation judge: a separate open_clip model (its own seed) trained with ClipLoss on every real "
        "image and caption except the reference style's images of world concepts. No pipeline stage uses it; the "
        "metrics stage passes it to torchmetrics as the feature extractor where Inception weights are unavailable, "
        "and uses it to name the concept of a generated image. Shipped weights (weights/demo_judge) are used when "
        "their training key matches. Metadata: its ceiling, top-1 concept among the world's concepts on the "
        "reference-style images it never trained on (reference/known, reference/novel: what generated images are "
        "compared with), and for information its accuracy per style on images it did train on."
    ),
)
def judge(
    context: dg.AssetExecutionContext, realrag: RealRagConfigResource, config: RetrainConfig
) -> dg.MaterializeResult:
    cfg = realrag.load()
    store = realrag.store()
    info = build_judge(cfg, load_world(store.world_dir), store.judge_dir, store.reports_dir, config.force_retrain)
    store.write_report("judge", info)
    return dg.MaterializeResult(
        metadata=readable(
            {
                **trained_model_metadata(info, store.reports_dir / "judge_loss.png"),
                **flat("ceiling", {k: v["acc"] for k, v in info["ceiling"].items()}),
            }
        )
    )

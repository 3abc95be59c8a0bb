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
        'The evaluation judge: a separate CLIP that never trained on the reference style\'s world images, and its ceiling on them. README: "The assets", "The models the measurement stands on".'
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

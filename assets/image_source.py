"""Foundation: make the configured image source ready (build the demo world, draw the smoke world, or
check a user's folder) and show a sample of it."""

import dagster as dg

from .resources import RealRagConfigResource
from realrag_core.evaluate.plots import image_grid
from realrag_core.data.sources.registry import prepare_source, sample_for_preview

from ._metadata import IO_RETRY, inline_image, readable


@dg.asset(
    group_name="foundation",
    kinds={"python"},
    retry_policy=IO_RETRY,
    code_version="1",
    description=(
        'Makes the real-image source ready to list (demo: the pinned emoji packages rendered; smoke: shapes drawn; your folder: checked), with a sample grid. README: "The assets".'
    ),
)
def image_source(context: dg.AssetExecutionContext, realrag: RealRagConfigResource) -> dg.MaterializeResult:
    cfg = realrag.load()
    summary = prepare_source(cfg.source)
    images, labels, columns = sample_for_preview(cfg.source)
    metadata = {
        "images": summary["images"],
        "concepts": summary["concepts"],
        "rebuilt": summary["rebuilt"],
        "source_kind": cfg.source.kind,
        "sample": inline_image(image_grid(images, labels, columns, cell=72), "one row per style"),
    }
    for style, count in summary.get("per_style", {}).items():
        metadata[f"images/{style}"] = count
    return dg.MaterializeResult(metadata=readable(metadata))

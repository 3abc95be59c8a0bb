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
        "The real-object image database's source. Demo profile: object emoji by independent artists "
        "(Noto, Twemoji, Fluent 3D/color/flat) fetched with `npm pack` at pinned versions (sha512 checked) "
        "and rendered on white, with a captions.csv and the licences. Smoke profile: coloured shapes drawn "
        "on the fly. User profiles: a folder with a captions file, or class-named sub-folders."
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

"""Foundation: the demo generator G(T, I_ref), trained on known concepts only, and its two properties."""

import dagster as dg

from .resources import RealRagConfigResource
from realrag_core.clip.bundle import load_clip
from realrag_core.clip.demo_pretrain import read_judge_ceiling
from realrag_core.generators.demo.training import check_generator, generator_bars, reference_effect
from realrag_core.generators.registry import build_generator
from realrag_core.data.sources.registry import iter_records
from realrag_core.data.world import load_world

from ._metadata import RetrainConfig, inline_image, readable


@dg.asset(
    group_name="foundation",
    deps=["world_splits", "judge"],
    kinds={"pytorch", "diffusers"},
    pool="gpu",
    code_version="2",
    description=(
        'The generator G(T, I_ref): the demo diffusion model with its own text encoder (trained, or shipped weights that match), or a pretrained pipeline; its property checks and image grid. README: "The assets", "The demo generator".'
    ),
)
def generator(
    context: dg.AssetExecutionContext, realrag: RealRagConfigResource, config: RetrainConfig
) -> dg.MaterializeResult:
    cfg = realrag.load()
    store = realrag.store()
    world = load_world(store.world_dir)
    records = list(iter_records(cfg.source))
    gen, info = build_generator(cfg, world, records, store.generator_dir, store.reports_dir, force=config.force_retrain)
    judge = load_clip(store.judge_dir, cfg.device, cfg.precision)
    checks, grid = check_generator(gen, judge, world, records, cfg)
    effect = reference_effect(gen, judge, world, records, cfg)
    held_out, ceiling = read_judge_ceiling(store.judge_dir)  # the split of images the judge never trained on
    report = {
        **info,
        "checks": checks,
        "reference_effect": effect,
        "ceiling_split": held_out,
        "ceiling": {k: ceiling.get(f"{held_out}/{k}") for k in ("known", "novel")},
    }
    report["bars"] = generator_bars(checks, report["ceiling"])
    grid.save(store.reports_dir / "generator_grid.png")
    store.write_report("generator", report)
    metadata = {"generator_id": info["generator_id"], "weights": info["source"], "params": info.get("params", 0)}
    for name, m in checks.items():
        metadata[f"judge_top1/{name}"] = m["acc"]
        metadata[f"judge_top1/{name}/n"] = m["n"]
    for split in ("known", "novel"):
        if report["ceiling"].get(split):
            metadata[f"ceiling/{split}"] = report["ceiling"][split]["acc"]
    for name, bar in report["bars"].items():
        metadata[f"bar/{name}"] = f"{'met' if bar['met'] else 'NOT met'}: {bar['value']:.3f} vs {bar['needed']:.3f}"
    metadata["reference_effect"] = effect["effect"]
    metadata["reference_effect/interval"] = f"[{effect['effect_lo']:.3f}, {effect['effect_hi']:.3f}] (n={effect['n']})"
    metadata["grid"] = inline_image(grid, "novel concepts: reference | text | text+ref | ref only")
    return dg.MaterializeResult(metadata=readable(metadata))

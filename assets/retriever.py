"""Stage 4: the reflective retriever, and the plain contrastive baseline trained by the same code."""

import json
from pathlib import Path

import dagster as dg

from .partitions import SHARD_NAMES
from .resources import RealRagConfigResource
from realrag_core.data.prompts import in_splits, load_prompts, of_protocol
from realrag_core.storage.store import retriever_key
from realrag_core.generate.generation import current_generated_rows, generate_for_prompts, read_current_generated
from realrag_core.generators.registry import (
    has_untrained_control,
    open_stored_generator,
    recorded_generator_id,
    untrained_copy,
)
from realrag_core.storage.manifest import read_manifest
from realrag_core.mining.reflective import negatives_version
from realrag_core.retriever.build import ablation_protocol, build_retriever
from realrag_core.retriever.checkpoint import RETRIEVER_FILE
from realrag_core.retriever.study import run_ablations, write_ablations
from realrag_core.embed.embedding import embed_source
from realrag_core.embed.reader import Scope
from realrag_core.embed.table import VECTOR_COLUMN, open_database_table, read_rows, table_model
from realrag_core.data.world import load_world

from ._metadata import flat, inline_image, readable

ROW_COLUMNS = ("id", "concept", "style", "path", VECTOR_COLUMN)


def _fit(realrag: RealRagConfigResource, name: str, reflective: bool) -> dg.MaterializeResult:
    cfg = realrag.load()
    store = realrag.store()
    table = open_database_table(cfg)
    negatives = store.read_negatives() if reflective else None
    if reflective and negatives and {r["table_version"] for r in negatives} != {table.version}:
        raise ValueError(
            f"negatives were mined on table version(s) {sorted({r['table_version'] for r in negatives})}, "
            f"the table is at {table.version}: rematerialize reflective_negatives"
        )
    world = load_world(store.world_dir)

    def reembed(model):  # trainable "both": the database as this model's image tower sees it, in its own table
        table_name = f"{cfg.embeddings.table_name}__{model.model_id.split(':')[-1]}"
        report = embed_source(
            cfg.source,
            Scope(frozenset(cfg.world.styles.database), world.concept_split),
            model,
            uri=cfg.lancedb_uri,
            cfg=cfg.embeddings.model_copy(update={"table_name": table_name}),
            rejects_path=store.rejects_dir / f"{table_name}.parquet",
            progress=False,
        )
        return table_name, report.table_version

    prompts = load_prompts(store.world_dir)
    rows = read_rows(table, ROW_COLUMNS)
    metadata = {}
    for protocol in cfg.prompts.protocols:  # one set of retrievers per protocol, each chosen on its own validation
        key = retriever_key(name, protocol)
        plot = store.reports_dir / f"{key}_loss.png"
        info = build_retriever(
            cfg,
            store.clip_dir,
            of_protocol(prompts, protocol),
            rows,
            table_version=table.version,
            negatives_rows=negatives,
            out_folder=store.retriever_dir(name, protocol),
            plot=plot,
            title=f"{name} ({protocol})",
            reembed=reembed,
            negatives_version=negatives_version(negatives) if negatives else None,
        )
        info["protocol"] = protocol
        store.write_report(key, info)
        pre = "" if protocol == "unseen_concepts" else f"{protocol}/"
        metadata.update(
            {
                f"{pre}{k}": v
                for k, v in {
                    "model_ids": ", ".join(s["model_id"] for s in info["seeds"]),
                    "seeds": len(info["seeds"]),
                    "chosen_lr": info["chosen_lr"],
                    "table_version": info["table_version"],
                    "resumed_fits": info["resumed_fits"],
                    "negatives_version": info["negatives_version"] or "none (contrastive baseline)",
                    "train_seconds": info["train_seconds"],
                    "negatives_per_prompt": info["negatives_per_prompt"],
                    "train_prompts": info["train_prompts"],
                    **{f"lr_grid/{c['lr']:g}/val_top1": c["top1"] for c in info["lr_choice"]},  # mean of its seeds
                    **flat(
                        "validation_mean_over_seeds",
                        {
                            s: {k: m[k] for k in ("top1", "top5", "top1_min", "top1_max", "queries")}
                            for s, m in info["validation"].items()
                        },
                    ),
                    **flat(
                        "validation_zero_shot",
                        {s: {k: m[k] for k in ("top1", "top5")} for s, m in info["validation_zero_shot"].items()},
                    ),
                    "loss_curve": inline_image(plot, f"loss curve (first seed, {protocol})"),
                }.items()
            }
        )
    return dg.MaterializeResult(metadata=readable(metadata))


@dg.asset(
    group_name="realrag",
    deps=["reflective_negatives", "image_embeddings", "prompts", "clip_backbone"],
    kinds={"pytorch", "safetensors"},
    pool="gpu",
    code_version="4",
    description=(
        'Stage 4: the reflective retriever, the base CLIP fine-tuned with the self-reflective contrastive loss; learning rate chosen on validation prompts, one model per seed, per protocol. README: "The assets".'
    ),
)
def retriever(context: dg.AssetExecutionContext, realrag: RealRagConfigResource) -> dg.MaterializeResult:
    return _fit(realrag, "retriever", reflective=True)


@dg.asset(
    group_name="realrag",
    deps=["image_embeddings", "prompts", "clip_backbone"],
    kinds={"pytorch", "safetensors"},
    pool="gpu",
    code_version="4",
    description=(
        'The paper\'s normal-RAG baseline: the same fine-tuning without the reflective term (same data, steps, grid and seeds). README: "The assets".'
    ),
)
def contrastive_retriever(context: dg.AssetExecutionContext, realrag: RealRagConfigResource) -> dg.MaterializeResult:
    return _fit(realrag, "contrastive_retriever", reflective=False)


@dg.asset(
    group_name="realrag",
    deps=["retriever", "contrastive_retriever", "generated_images", "reflective_negatives", "generator"],
    kinds={"pytorch", "parquet"},
    pool="gpu",
    code_version="1",
    description=(
        'Validation-only controls and ablations of the reflective retriever (random or text-nearest negatives, policies, k, trainable parts, learning-rate grids). README: "The assets".'
    ),
)
def retriever_ablations(context: dg.AssetExecutionContext, realrag: RealRagConfigResource) -> dg.MaterializeResult:
    cfg = realrag.load()
    store = realrag.store()
    table = open_database_table(cfg)
    negatives = store.read_negatives()
    encoder_id = table_model(table)[0]
    generated = read_current_generated(  # the same rows the reflective negatives were mined from
        store.generated_dir,
        recorded_generator_id(cfg, store),
        prompts=in_splits(load_prompts(store.world_dir), cfg.generation.retriever_splits),
        seeds=cfg.generation.seeds,
        shard_count=len(SHARD_NAMES),
        encoder_id=encoder_id,
    )
    protocol = ablation_protocol(cfg)
    reports = {
        name: json.loads((store.retriever_dir(name, protocol) / RETRIEVER_FILE).read_text())
        for name in ("retriever", "contrastive_retriever")
    }
    for name, report in reports.items():
        if report["table_version"] != table.version:
            raise ValueError(
                f"{name} was trained on table version {report['table_version']}, the table is at "
                f"{table.version}: rematerialize it"
            )

    def progress(variant, seed):
        context.log.info(f"ablation {variant}, seed {seed}: done")

    prompts = of_protocol(load_prompts(store.world_dir), protocol)
    other_generated = {}
    untrained_wanted = "untrained" in cfg.retriever.ablations.generators
    if untrained_wanted and not has_untrained_control(cfg):
        context.log.warning("ablation generators: 'untrained' is defined for the demo generator only; skipped")
    elif untrained_wanted:
        gen, _, encoder = open_stored_generator(cfg, store)
        untrained = untrained_copy(cfg, gen)
        folder = Path(store.root) / "ablations" / "generated_untrained"
        chosen = in_splits(prompts, cfg.generation.retriever_splits)
        generate_for_prompts(
            untrained,
            encoder,
            chosen,
            cfg.generation.seeds,
            folder,
            batch_size=cfg.generator.sampling.batch_size,
            label="retriever_ablations: G(T) of the untrained generator",
        )
        manifest = read_manifest(folder)
        other_generated["untrained"] = current_generated_rows(manifest, untrained.generator_id, encoder.model_id)
    rows = run_ablations(
        cfg,
        store.clip_dir,
        prompts,
        read_rows(table, ROW_COLUMNS),
        generated=generated,
        negatives_rows=negatives,
        table_version=table.version,
        reflective=reports["retriever"],
        contrastive=reports["contrastive_retriever"],
        progress=progress,
        other_generated=other_generated,
    )
    paths = write_ablations(rows, store.reports_dir)
    store.write_report("retriever_ablations", {"rows": rows, "protocol": protocol})
    return dg.MaterializeResult(
        metadata=readable(
            {
                "protocol": protocol,
                **{f"{r['variant']}/val_top1": r["val_top1"] for r in rows},
                "table": dg.MetadataValue.md(paths["md"].read_text()),
                "chart": inline_image(paths["chart"], "validation top-1 by variant"),
            }
        )
    )

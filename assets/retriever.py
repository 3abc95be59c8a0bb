"""Stage 4: the reflective retriever, and the plain contrastive baseline trained by the same code."""

import dagster as dg
import pyarrow.parquet as pq

from pipelines.resources import RealRagConfigResource
from realrag_core.prompts import load_prompts
from realrag_core.retriever import build_retriever
from realrag_core.vector_table import open_table_readonly, read_rows

from ._metadata import flat, inline_image


def _fit(realrag: RealRagConfigResource, name: str, reflective: bool) -> dg.MaterializeResult:
    cfg = realrag.load()
    store = realrag.store()
    table = open_table_readonly(cfg.lancedb_uri, cfg.embeddings.table_name)
    negatives = pq.read_table(store.negatives_path).to_pylist() if reflective else None
    if reflective and negatives and {r["table_version"] for r in negatives} != {table.version}:
        raise ValueError(f"negatives were mined on table version(s) {sorted({r['table_version'] for r in negatives})}, "
                         f"the table is at {table.version}: rematerialize reflective_negatives")  # fmt: skip
    plot = store.reports_dir / f"{name}_loss.png"
    info = build_retriever(cfg, store.clip_dir, load_prompts(store.world_dir), read_rows(table), table.version,
                           negatives, store.checkpoint_dir(name), plot, name)  # fmt: skip
    store.write_report(name, {k: v for k, v in info.items() if k != "losses"})
    return dg.MaterializeResult(metadata={
        "model_id": info["model_id"], "table_version": info["table_version"], "train_seconds": info["train_seconds"],
        "final_loss": info["final_loss"], "negatives_per_prompt": info["negatives_per_prompt"],
        **flat("validation", {s: {k: m[k] for k in ("top1", "top5", "queries")} for s, m in info["validation"].items()}),
        **flat("validation_zero_shot", {s: {k: m[k] for k in ("top1", "top5")} for s, m in info["validation_zero_shot"].items()}),
        "loss_curve": inline_image(plot, "loss curve"),
    })  # fmt: skip


@dg.asset(
    group_name="realrag",
    deps=["reflective_negatives", "image_embeddings", "prompts", "clip_backbone"],
    kinds={"pytorch", "safetensors"},
    code_version="1",
    description=(
        "Stage 4. Self-reflective contrastive learning: fine-tunes the base CLIP's text tower on prompts of "
        "retriever-train concepts paired with their concept's database images, with the loss "
        "L_i = -log(exp(s(t_i,v_i)/tau) / (sum_j exp(s(t_i,v_j)/tau) + sum_k exp(s(t_i,r_ik)/tau))) whose "
        "denominator adds each prompt's reflective negatives r_ik; in-batch images of the same concept are "
        "masked. The image tower is frozen, so the LanceDB table stays valid. Metadata: loss curve and "
        "validation text->image accuracy next to the zero-shot base."
    ),
)
def retriever(context: dg.AssetExecutionContext, realrag: RealRagConfigResource) -> dg.MaterializeResult:
    return _fit(realrag, "retriever", reflective=True)


@dg.asset(
    group_name="realrag",
    deps=["image_embeddings", "prompts", "clip_backbone"],
    kinds={"pytorch", "safetensors"},
    code_version="1",
    description=(
        "The paper's 'normal RAG' baseline: the same fine-tuning code, data, steps and settings as `retriever` "
        "with the reflective term off (plain contrastive loss), so the comparison isolates what reflection adds."
    ),
)
def contrastive_retriever(context: dg.AssetExecutionContext, realrag: RealRagConfigResource) -> dg.MaterializeResult:
    return _fit(realrag, "contrastive_retriever", reflective=False)

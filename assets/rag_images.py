"""Stage 5: retrieval-augmented generation, G(T, I_ref), for every arm on the evaluation prompts."""

import collections

import dagster as dg

from pipelines.resources import RealRagConfigResource
from realrag_core.generators.demo_training import open_stored_generator
from realrag_core.prompts import load_prompts
from realrag_core.manifest import read_manifest
from realrag_core.rag import generate_arms
from realrag_core.retriever import load_retriever
from realrag_core.vector_table import open_table_readonly


@dg.asset(
    group_name="realrag",
    deps=["generator", "retriever", "contrastive_retriever", "image_embeddings", "prompts"],
    kinds={"pytorch", "parquet"},
    code_version="1",
    description=(
        "Stage 5. For every evaluation prompt and seed, four arms with identical seeds: `none` (no retrieval), "
        "`clip` (top-1 by the zero-shot base CLIP), `contrastive` (top-1 by the plain contrastive fine-tune) and "
        "`reflective` (top-1 by the reflective retriever); each generates G(T, I_ref) (or G(T)). PNG + Parquet "
        "manifest with the retrieved image's id, concept, style and similarity. Resumable."
    ),
)
def rag_images(context: dg.AssetExecutionContext, realrag: RealRagConfigResource) -> dg.MaterializeResult:
    cfg = realrag.load()
    store = realrag.store()
    gen, _, base = open_stored_generator(cfg, store)
    arms = {"none": None, "clip": base,
            "contrastive": load_retriever(store.checkpoint_dir("contrastive_retriever"), cfg.device)[0],
            "reflective": load_retriever(store.checkpoint_dir("retriever"), cfg.device)[0]}  # fmt: skip
    prompts = [p for p in load_prompts(store.world_dir) if p.retriever_split in cfg.rag.retriever_splits]
    table = open_table_readonly(cfg.lancedb_uri, cfg.embeddings.table_name)
    report = generate_arms(gen, arms, prompts, cfg.rag.seeds, table, cfg.embeddings.index, store.rag_dir,
                           cfg.generator.sampling.batch_size)  # fmt: skip
    manifest = read_manifest(store.rag_dir)
    rows = manifest.to_pylist()
    hit = collections.Counter((r["arm"], r["retrieved_concept"] == r["concept"]) for r in rows if r["arm"] != "none")
    metadata = {**report, "dagster/row_count": len(rows), "prompts": len(prompts), "seeds": len(cfg.rag.seeds)}
    for arm in ("clip", "contrastive", "reflective"):
        n = hit[(arm, True)] + hit[(arm, False)]
        metadata[f"retrieval_top1/{arm}"] = hit[(arm, True)] / n if n else 0.0
    store.write_report("rag_images", metadata)
    return dg.MaterializeResult(metadata=metadata)

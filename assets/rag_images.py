"""Stage 5: retrieval-augmented generation, G(T, I_ref), for every arm on the evaluation prompts."""

import collections

import dagster as dg

from pipelines.partitions import PROMPT_SHARDS, SHARD_BACKFILL, SHARD_NAMES, selected_shards
from pipelines.resources import RealRagConfigResource
from realrag_core.generators.registry import open_stored_generator
from realrag_core.prompts import load_prompts
from realrag_core.manifest import read_manifest
from realrag_core.rag import OracleRetriever, current_rows, generate_arms
from realrag_core.retriever import load_retrievers
from realrag_core.shards import in_shards
from realrag_core.vector_table import open_table_readonly


@dg.asset(
    group_name="realrag",
    deps=["generator", "retriever", "contrastive_retriever", "image_embeddings", "prompts"],
    kinds={"pytorch", "parquet"},
    pool="gpu",
    partitions_def=PROMPT_SHARDS,
    backfill_policy=SHARD_BACKFILL,
    code_version="3",
    description=(
        "Stage 5. For every evaluation prompt and seed, the arms with identical seeds: `none` (no retrieval), "
        "`oracle` (a database image of the prompt's own concept, chosen by rag.oracle_seed: the best a retriever "
        "could do), `clip` (top-1 by the zero-shot base CLIP), `contrastive` (top-1 by the plain contrastive fine-tune) and "
        "`reflective` (top-1 by the reflective retriever), the fine-tuned arms once per training seed; each generates "
        "G(T, I_ref) (or G(T)), and an image shared by arms that retrieved the same reference is made once. PNG + "
        "Parquet manifest with the retrieved image's id, concept, style and similarity. Resumable. Partitioned by "
        "prompt shard like generated_images: a backfill of any shards adds up to the unpartitioned run."
    ),
)
def rag_images(context: dg.AssetExecutionContext, realrag: RealRagConfigResource) -> dg.MaterializeResult:
    cfg = realrag.load()
    store = realrag.store()
    gen, _, base = open_stored_generator(cfg, store)
    table = open_table_readonly(cfg.lancedb_uri, cfg.embeddings.table_name)
    arms, tables = {"none": [(None, None)], "clip": [(None, base)]}, {}
    if cfg.rag.oracle:
        arms["oracle"] = [(None, OracleRetriever(cfg.rag.oracle_seed))]
    for arm, name in (("contrastive", "contrastive_retriever"), ("reflective", "retriever")):
        arms[arm] = []
        for rseed, model, table_name in load_retrievers(store.checkpoint_dir(name), cfg.device, cfg.precision):
            arms[arm].append((rseed, model))
            if table_name:  # its image tower was trained: it searches the table that tower embedded
                tables[(arm, rseed)] = open_table_readonly(cfg.lancedb_uri, table_name)
    retriever_ids = {(arm, rseed): (model.model_id_for(table) if isinstance(model, OracleRetriever)
                                    else model.model_id if model is not None else "")
                     for arm, models in arms.items() for rseed, model in models}  # fmt: skip
    shards = selected_shards(context)
    prompts = [p for p in load_prompts(store.world_dir) if p.retriever_split in cfg.rag.retriever_splits]
    prompts = in_shards(prompts, shards, len(SHARD_NAMES))
    report = generate_arms(gen, arms, prompts, cfg.rag.seeds, table, cfg.embeddings.index, store.rag_dir,
                           cfg.generator.sampling.batch_size, tables=tables)  # fmt: skip
    ids = {p.prompt_id for p in prompts}
    rows = [r for r in current_rows(read_manifest(store.rag_dir).to_pylist(), gen.generator_id, retriever_ids)
            if r["prompt_id"] in ids]  # fmt: skip
    hit = collections.Counter((r["arm"], r["retrieved_concept"] == r["concept"]) for r in rows if r["arm"] != "none")
    metadata = {**report, "dagster/row_count": len(rows), "shards": ", ".join(shards), "prompts": len(prompts),
                "seeds": len(cfg.rag.seeds),
                "retriever_seeds": len(arms["reflective"])}  # fmt: skip
    for arm in [a for a in arms if a != "none"]:
        n = hit[(arm, True)] + hit[(arm, False)]
        metadata[f"retrieval_top1/{arm}"] = hit[(arm, True)] / n if n else 0.0
    store.write_report("rag_images", {**metadata, "generator_id": gen.generator_id,
                                      "retrievers": [[a, s, i] for (a, s), i in retriever_ids.items()]})  # fmt: skip
    return dg.MaterializeResult(metadata=metadata)

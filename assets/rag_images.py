"""Stage 5: retrieval-augmented generation, G(T, I_ref), for every arm on the evaluation prompts."""

import collections

import dagster as dg

from .partitions import PROMPT_SHARDS, SHARD_BACKFILL, SHARD_NAMES, selected_shards
from .resources import RealRagConfigResource
from realrag_core.generators.registry import open_stored_generator
from realrag_core.data.prompts import load_prompts, of_protocol
from realrag_core.storage.manifest import read_manifest
from realrag_core.rag.retrieve import OracleRetriever, current_arms, current_rows, generate_arms
from realrag_core.retriever.checkpoint import load_retrievers
from realrag_core.data.shards import in_shards
from realrag_core.embed.table import open_database_table, open_table_readonly
from ._metadata import readable


@dg.asset(
    group_name="realrag",
    deps=["generator", "retriever", "contrastive_retriever", "image_embeddings", "prompts"],
    kinds={"pytorch", "parquet"},
    pool="gpu",
    partitions_def=PROMPT_SHARDS,
    backfill_policy=SHARD_BACKFILL,
    code_version="3",
    description=(
        'Stage 5: every evaluation prompt and seed through the arms (none, oracle, clip, contrastive, reflective) with identical seeds: retrieve one real image, generate G(T, I_ref); partitioned by prompt shard. README: "The assets".'
    ),
)
def rag_images(context: dg.AssetExecutionContext, realrag: RealRagConfigResource) -> dg.MaterializeResult:
    cfg = realrag.load()
    store = realrag.store()
    gen, _, base = open_stored_generator(cfg, store)
    table = open_database_table(cfg)
    shards = selected_shards(context)
    all_prompts = load_prompts(store.world_dir)
    metadata = {"shards": ", ".join(shards)}
    totals = collections.Counter()
    current = current_arms(cfg, store, table)  # the ids fid will score, from the checkpoints
    retriever_ids = []  # (arm, retriever seed, retriever id, protocol) of every current model
    hit = collections.Counter()
    for protocol in cfg.prompts.protocols:  # each protocol's evaluation prompts with its own fine-tuned retrievers
        arms, tables = {"none": [(None, None)], "clip": [(None, base)]}, {}
        if cfg.rag.oracle:
            arms["oracle"] = [(None, OracleRetriever(cfg.rag.oracle_seed))]
        for arm, name in (("contrastive", "contrastive_retriever"), ("reflective", "retriever")):
            arms[arm] = []
            for rseed, model, table_name in load_retrievers(
                store.retriever_dir(name, protocol), cfg.device, cfg.precision
            ):
                arms[arm].append((rseed, model))
                if table_name:  # its image tower was trained: it searches the table that tower embedded
                    tables[(arm, rseed)] = open_table_readonly(cfg.lancedb_uri, table_name)
        ids = current[protocol]
        loaded = {(arm, rseed) for arm, models in arms.items() for rseed, _ in models}
        if loaded != set(ids):
            raise ValueError(f"the retriever checkpoints changed while rag_images ran: {sorted(loaded ^ set(ids))}")
        retriever_ids += [(a, s, i, protocol) for (a, s), i in ids.items()]
        prompts = in_shards(of_protocol(all_prompts, protocol, cfg.rag.retriever_splits), shards, len(SHARD_NAMES))
        report = generate_arms(
            gen,
            arms,
            prompts,
            cfg.rag.seeds_for(protocol),
            table=table,
            index=cfg.embeddings.index,
            folder=store.rag_dir,
            batch_size=cfg.generator.sampling.batch_size,
            tables=tables,
        )
        totals.update({k: v for k, v in report.items() if k != "seconds"})
        pids = {p.prompt_id for p in prompts}
        rows = [
            r
            for r in current_rows(read_manifest(store.rag_dir).to_pylist(), gen.generator_id, ids)
            if r["prompt_id"] in pids
        ]
        hit.update((protocol, r["arm"], r["retrieved_concept"] == r["concept"]) for r in rows if r["arm"] != "none")
        totals["dagster/row_count"] += len(rows)
        totals["prompts"] += len(prompts)
        pre = "" if protocol == "unseen_concepts" else f"{protocol}/"
        metadata[f"{pre}retriever_seeds"] = len(arms["reflective"])
        metadata[f"{pre}seeds"] = len(cfg.rag.seeds_for(protocol))
        for arm in [a for a in arms if a != "none"]:
            n = hit[(protocol, arm, True)] + hit[(protocol, arm, False)]
            metadata[f"{pre}retrieval_top1/{arm}"] = hit[(protocol, arm, True)] / n if n else 0.0
    metadata.update(totals)
    store.write_report(
        "rag_images", {**metadata, "generator_id": gen.generator_id, "retrievers": [list(r) for r in retriever_ids]}
    )
    return dg.MaterializeResult(metadata=readable(metadata))

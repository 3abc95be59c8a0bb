"""Stage 5 kernel: retrieval-augmented generation for the evaluation prompts, one arm per retriever.

Arms: ``none`` (G(T), no retrieval), ``oracle`` (a database image of the prompt's own concept: the best any
retriever could hand over), ``clip`` (top-1 by the zero-shot base CLIP), ``contrastive`` (top-1 by the plain
contrastive fine-tune), ``reflective`` (top-1 by the reflective retriever); the fine-tuned arms once per
training seed. Every arm uses the same prompts and sample seeds. Retrieval goes through the LanceDB
table (its index when there is one).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pyarrow as pa
from tqdm.auto import tqdm

from realrag_core.clip.bundle import ClipBundle
from realrag_core.config.stages import IndexConfig
from realrag_core.generators.base import Generator
from realrag_core.storage.manifest import append_part, read_manifest, save_png
from realrag_core.data.prompts import Prompt
from realrag_core.embed.table import open_row_image, search_batch

ARMS = ("none", "oracle", "clip", "contrastive", "reflective")
SCHEMA = pa.schema(
    [
        ("arm", pa.string()),
        ("retriever_seed", pa.int64()),
        ("prompt_id", pa.string()),
        ("prompt", pa.string()),
        ("concept", pa.string()),
        ("generator_split", pa.string()),
        ("seed", pa.int64()),
        ("path", pa.string()),
        ("retrieved_id", pa.string()),
        ("retrieved_path", pa.string()),
        ("retrieved_concept", pa.string()),
        ("retrieved_style", pa.string()),
        ("similarity", pa.float32()),
        ("retriever_id", pa.string()),
        ("generator_id", pa.string()),
        ("table_name", pa.string()),
        ("table_version", pa.int64()),
    ]
)


@dataclass(frozen=True)
class Retrieved:
    id: str
    path: str
    concept: str
    style: str
    similarity: float


def retrieve_top1(retriever: ClipBundle, prompts: Sequence[Prompt], table, index: IndexConfig) -> list[Retrieved]:
    from realrag_core.embed.table import table_model

    stored_model, dim = table_model(table)
    if retriever.dim != dim:  # before any query: a checkpoint of another model or size
        raise ValueError(
            f"retriever {retriever.model_id} embeds text in {retriever.dim} dimensions, the table holds "
            f"{dim}-dimensional embeddings of {stored_model}: use a retriever trained on this table's "
            "encoder, or rematerialize the retriever"
        )
    text = retriever.embed_texts([p.prompt for p in prompts]).numpy()
    out = []
    for rows in search_batch(table, text, 1, index):  # every prompt in one batched query per chunk
        row = rows[0]
        out.append(Retrieved(row["id"], row["path"], row["concept"], row["style"], 1.0 - float(row["_distance"])))
    return out


@dataclass(frozen=True)
class OracleRetriever:
    """Hands over a database image of the prompt's own concept, chosen among that concept's images by
    ``seed`` and the prompt (the same prompt gets the same image in every run). Its id names the table version
    it chose from, so a grown database makes new oracle rows instead of reusing stale ones."""

    seed: int = 0

    def model_id_for(self, table) -> str:
        return f"oracle:seed{self.seed}:{table.name}@v{table.version}"

    def retrieve(self, prompts: Sequence[Prompt], table) -> list[Retrieved | None]:
        from realrag_core.embed.table import read_rows

        rows = read_rows(table, ("id", "path", "concept", "style")).to_pylist()
        by_concept: dict[str, list[dict]] = {}
        for r in rows:
            by_concept.setdefault(r["concept"], []).append(r)
        out = []
        for p in prompts:
            choices = sorted(by_concept.get(p.concept, []), key=lambda r: r["id"])
            if not choices:  # no database image of this concept: the arm falls back to G(T) for this prompt
                out.append(None)
                continue
            digest = hashlib.sha256(f"{self.seed}:{p.prompt_id}".encode()).digest()
            r = choices[int.from_bytes(digest[:8], "big") % len(choices)]
            out.append(Retrieved(r["id"], r["path"], r["concept"], r["style"], 1.0))
        return out


FINE_TUNED = (("contrastive", "contrastive_retriever"), ("reflective", "retriever"))  # arm, retriever asset


def current_arms(cfg, store, table) -> dict[str, dict[tuple[str, int | None], str]]:
    """protocol -> {(arm, retriever seed): retriever id} of every model stage 5 uses now, read from the stages'
    checkpoint records (the base CLIP's weights, each retriever asset's ``retriever.json``) and the table's
    version for the oracle; ``none`` has the id "". rag_images generates with exactly these, fid scores them."""
    from realrag_core.clip.bundle import WEIGHTS_NAME, model_id_of
    from realrag_core.retriever.checkpoint import retriever_ids

    base = model_id_of(store.clip_dir / WEIGHTS_NAME)
    out = {}
    for protocol in cfg.prompts.protocols:
        ids = {("none", None): "", ("clip", None): base}
        if cfg.rag.oracle:
            ids[("oracle", None)] = OracleRetriever(cfg.rag.oracle_seed).model_id_for(table)
        for arm, name in FINE_TUNED:
            ids.update({(arm, seed): mid for seed, mid in retriever_ids(store.retriever_dir(name, protocol)).items()})
        out[protocol] = ids
    return out


def image_path(generator_id: str, prompt_id: str, retrieved_id: str | None, seed: int) -> Path:
    """G(T, I_ref) depends on (generator, prompt, reference, seed) only (the generator protocol is
    deterministic and batch-invariant), so arms and retriever seeds that retrieve the same image share it."""
    gen = generator_id.split(":")[-1]
    return Path("images") / gen / prompt_id / f"{retrieved_id or 'none'}_{seed}.png"


def current_rows(
    manifest: list[dict], generator_id: str, retriever_ids: dict[tuple[str, int | None], str]
) -> list[dict]:
    """The manifest rows of this generator and these retrievers (rows of retrained or dropped retrievers and
    of other generators stay on disk for reuse but are not the current result)."""
    return [
        r
        for r in manifest
        if r["generator_id"] == generator_id and retriever_ids.get((r["arm"], r["retriever_seed"])) == r["retriever_id"]
    ]


def generate_arms(
    generator: Generator,
    retrievers: dict[str, list[tuple[int | None, ClipBundle | None]]],
    prompts: Sequence[Prompt],
    seeds: Sequence[int],
    *,
    table,
    index: IndexConfig,
    folder: Path,
    batch_size: int = 64,
    progress: bool = True,
    tables: dict | None = None,
) -> dict:
    """Every (arm, retriever seed, prompt, seed) row not yet in the manifest; each distinct (prompt, retrieved
    image, seed) is generated once. Resumable batch by batch. ``retrievers[arm]``: (training seed, model)
    pairs (an ``OracleRetriever`` for ``oracle``); ``none`` is ``[(None, None)]``. ``tables[(arm, seed)]``: the table a retriever searches when its
    image tower was trained (default: ``table``)."""
    start = time.perf_counter()
    gid = generator.generator_id
    existing = read_manifest(folder)
    done = set()
    if existing is not None:
        missing = {"arm", "retriever_seed", "retriever_id", "prompt_id", "seed", "generator_id"} - set(
            existing.column_names
        )
        if missing:
            raise ValueError(
                f"the RAG manifest in {folder} was written by an older version of realrag (no column(s) "
                f"{sorted(missing)}): move that folder away and materialize rag_images again"
            )
        for r in existing.to_pylist():
            done.add((r["arm"], r["retriever_seed"], r["retriever_id"], r["prompt_id"], r["seed"], r["generator_id"]))
    rows_todo = []
    for arm, models in retrievers.items():
        for rseed, retriever in models:
            searched = (tables or {}).get((arm, rseed), table)
            if isinstance(retriever, OracleRetriever):
                hits, rid = retriever.retrieve(prompts, searched), retriever.model_id_for(searched)
            elif retriever is not None:
                hits, rid = retrieve_top1(retriever, prompts, searched, index), retriever.model_id
            else:
                hits, rid = [None] * len(prompts), ""
            for p, hit in zip(prompts, hits):
                for s in seeds:
                    if (arm, rseed, rid, p.prompt_id, int(s), gid) not in done:
                        rows_todo.append((arm, rseed, rid, p, hit, int(s), searched))
    images_todo, seen = [], set()
    for arm, rseed, rid, p, hit, s, _ in rows_todo:
        rel = str(image_path(gid, p.prompt_id, hit.id if hit else None, s))
        if rel not in seen and not (folder / rel).is_file():  # PNGs are written atomically
            seen.add(rel)
            images_todo.append((rel, p, hit, s))
    bar = tqdm(total=len(images_todo), desc="rag_images", unit="img", disable=not progress)
    for i in range(0, len(images_todo), batch_size):
        chunk = images_todo[i : i + batch_size]
        refs = [open_row_image(hit.path) if hit else None for _, _, hit, _ in chunk]
        images = generator.generate([p.prompt for _, p, _, _ in chunk], refs, [s for *_, s in chunk])
        for (rel, *_), img in zip(chunk, images):
            save_png(img, folder / rel)
        bar.update(len(chunk))
    bar.close()
    for i in range(0, len(rows_todo), 4096):  # rows only after their images exist
        rows = {f.name: [] for f in SCHEMA}
        for arm, rseed, rid, p, hit, s, searched in rows_todo[i : i + 4096]:
            values = {
                "arm": arm,
                "retriever_seed": rseed,
                "prompt_id": p.prompt_id,
                "prompt": p.prompt,
                "concept": p.concept,
                "generator_split": p.generator_split,
                "seed": s,
                "path": str(image_path(gid, p.prompt_id, hit.id if hit else None, s)),
                "retrieved_id": hit.id if hit else None,
                "retrieved_path": hit.path if hit else None,
                "retrieved_concept": hit.concept if hit else None,
                "retrieved_style": hit.style if hit else None,
                "similarity": hit.similarity if hit else None,
                "retriever_id": rid,
                "generator_id": gid,
                "table_name": searched.name,
                "table_version": searched.version,
            }
            for k, v in values.items():
                rows[k].append(v)
        append_part(folder, rows, SCHEMA)
    return {
        "rows_added": len(rows_todo),
        "generated": len(images_todo),
        "shared_images": len(rows_todo) - len(images_todo),
        "seconds": round(time.perf_counter() - start, 2),
    }


def complete_eval_rows(cfg, store, shard_count: int) -> dict[str, tuple[list[dict], list]]:
    """protocol -> (the RAG stage's current rows on that protocol's evaluation prompts, in one order whatever runs
    wrote the manifest's parts; those prompts): what the results stage and the human study read. rag_images is
    partitioned by prompt shard: refuses (naming the shards to backfill) unless every (prompt, seed) has every arm."""
    from collections import defaultdict

    from realrag_core.generators.registry import recorded_generator_id
    from realrag_core.data.prompts import load_prompts, of_protocol
    from realrag_core.data.shards import require_complete
    from realrag_core.embed.table import existing_paths, open_database_table

    manifest = read_manifest(store.rag_dir)
    if manifest is None:
        raise FileNotFoundError("no RAG images: materialize rag_images first")
    generator_id = recorded_generator_id(cfg, store)
    table = open_database_table(cfg)
    current = current_arms(cfg, store, table)  # the models rag_images generates with
    where = existing_paths(table)  # a retrieved picture is opened where the table has it now (a moved clone)
    manifest_rows = [
        {**r, "retrieved_path": where.get(r["retrieved_id"], r["retrieved_path"])} if r["retrieved_id"] else r
        for r in manifest.to_pylist()
    ]
    prompts = load_prompts(store.world_dir)
    out = {}
    for protocol in cfg.prompts.protocols:
        ids = current[protocol]
        eval_prompts = of_protocol(prompts, protocol, cfg.rag.retriever_splits)
        pids = {p.prompt_id for p in eval_prompts}
        rows = [r for r in current_rows(manifest_rows, generator_id, ids) if r["prompt_id"] in pids]
        rows.sort(
            key=lambda r: (
                r["arm"],
                -1 if r["retriever_seed"] is None else r["retriever_seed"],
                r["prompt_id"],
                r["seed"],
            )
        )
        arms_of = defaultdict(set)
        for r in rows:
            arms_of[(r["prompt_id"], r["seed"])].add((r["arm"], r["retriever_seed"]))
        require_complete(
            "rag_images",
            [(p.prompt_id, s) for p in eval_prompts for s in cfg.rag.seeds_for(protocol)],
            [k for k, v in arms_of.items() if len(v) == len(ids)],
            shard_count,
        )
        out[protocol] = (rows, eval_prompts)
    return out

"""Stage 1 kernel: image source -> CLIP embeddings in LanceDB (reader -> model step -> writer).

Idempotent and incremental: rows are keyed by a content id and upserted; ids already in the table are
not decoded or embedded again; a crash loses at most the rows not yet flushed, and a rerun resumes.
Bad files go to a rejects Parquet with a reason; the run goes on.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from realrag_core.clip.bundle import ClipBundle
from realrag_core.config.stages import EmbeddingsConfig
from realrag_core.embed.reader import ImageReadDataset, Scope, collate_read_batch
from realrag_core.data.image_io import DecodeLimits
from realrag_core.data.sources.listing import ImageRecord
from realrag_core.embed.table import (
    IndexState,
    ensure_index,
    existing_ids,
    existing_paths,
    id_filters,
    refresh_paths,
    open_embedding_table,
    repair_duplicates,
    table_schema,
    upsert,
)

REJECT_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("caption", pa.string()),
        ("concept", pa.string()),
        ("style", pa.string()),
        ("split", pa.string()),
        ("role", pa.string()),  # database | reference (held out, checked only) | "" (not an image of the world)
        ("reason", pa.string()),
        ("run_at", pa.timestamp("us", tz="UTC")),
    ]
)
REFERENCE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("path", pa.string()),
        ("caption", pa.string()),
        ("concept", pa.string()),
        ("style", pa.string()),
        ("split", pa.string()),
        ("image_sha256", pa.string()),
        ("run_at", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass
class EmbedReport:
    inserted: int
    skipped_unchanged: int
    valid_images: int  # distinct ids of listed, readable images in scope: the rows the table should hold
    removed: int  # rows of images no longer listed (or whose content changed: a new id replaced them)
    stale_kept: int  # such rows left in place because the source looked unavailable
    duplicates_in_source: int
    rejected: int
    rows: int
    table_version: int
    table_recreated: bool
    index: IndexState
    seconds: float
    rejects_path: str
    model_id: str
    duplicates_repaired: int = 0  # rows a concurrent writer left twice (object storage, lancedb#2463), removed
    rejects_by_reason: dict[str, int] = field(default_factory=dict)  # the reason's text before its first ":"
    label_conflicts: int = 0  # pictures (by their bytes) listed under two or more concepts
    label_conflict_rows_dropped: int = 0  # their rows removed by ``embeddings.label_conflicts``
    label_conflicts_path: str = ""
    reference_checked: int = 0  # reference images (held out of the database) that decode: FID's and the study's
    reference_path: str = ""  # their listing (``reference_listing``), in source order
    paths_refreshed: int = 0  # rows whose picture now lies elsewhere (a moved clone or folder): path rewritten

    def as_metadata(self) -> dict:
        out = asdict(self)
        out["index"] = self.index.action
        out["indexed_rows"] = self.index.indexed_rows
        out["unindexed_rows"] = self.index.unindexed_rows
        out["images_per_second"] = round(self.inserted / self.seconds, 1) if self.seconds else 0.0
        return out


CONFLICT_SCHEMA = pa.schema(
    [
        ("image_sha256", pa.string()),
        ("path", pa.string()),
        ("caption", pa.string()),
        ("concept", pa.string()),
        ("style", pa.string()),
        ("concepts", pa.list_(pa.string())),  # every concept this picture is listed under
        ("action", pa.string()),  # kept | dropped (``embeddings.label_conflicts``)
        ("run_at", pa.timestamp("us", tz="UTC")),
    ]
)


def reason_kind(reason: str) -> str:
    """A reject reason's kind, for counting: its text before the first ":" ("unreadable file: ..." and the like)."""
    return reason.split(":", 1)[0].strip()


def delete_ids(table, ids) -> None:
    for where in id_filters(ids):
        table.delete(where)


def remove_missing(table, stale: set[str], enabled: bool) -> tuple[int, int]:
    """Delete rows whose image is no longer listed or readable (or changed: its content hash is a new id).
    Refused, and counted as kept, when more than half the table would go: a missing mount must not empty the
    database."""
    if not stale or not enabled or len(stale) > table.count_rows() / 2:
        return 0, len(stale)
    delete_ids(table, stale)
    return len(stale), 0


class LabelConflicts:
    """The same picture (by its bytes) listed under different concepts: a class-folder corpus with one photo
    filed twice, a captions file that disagrees with itself. ``keep_both`` (the default: existing tables do not
    change) keeps every row, ``first_wins`` keeps the concept listed first, ``drop_both`` drops them all; every
    listing involved is written to the conflicts file either way."""

    def __init__(self, policy: str, sequential: bool):
        self.policy, self.sequential = policy, sequential
        self.listings: dict[str, list[dict]] = {}  # image hash -> its in-scope listings, in arrival order

    def add(self, meta: dict) -> None:
        self.listings.setdefault(meta["image_sha256"], []).append(meta)

    def write_now(self, meta: dict) -> bool:
        """Whether a newly read row may be written: False when the policy is already certain to drop it."""
        if self.policy == "keep_both":
            return True
        others = [m for m in self.listings.get(meta["image_sha256"], ()) if m["concept"] != meta["concept"]]
        if not others:
            return True
        if self.policy == "drop_both":
            return False
        # first_wins: an earlier listing of another concept beats it; certain only when files arrive in order
        return not (self.sequential and min(m["position"] for m in others) < meta["position"])

    def resolve(self) -> tuple[dict[str, list[dict]], set[str], set[str]]:
        """(conflicting pictures, ids to drop, ids kept) once every listing has been seen."""
        conflicts = {h: ls for h, ls in self.listings.items() if len({m["concept"] for m in ls}) > 1}
        drop, keep = set(), set()
        for listings in conflicts.values():
            first = min(listings, key=lambda m: m["position"])["concept"]
            for m in listings:
                dropped = self.policy == "drop_both" or (self.policy == "first_wins" and m["concept"] != first)
                (drop if dropped else keep).add(m["id"])
        return conflicts, drop - keep, keep  # an id shared by a kept listing (same bytes and caption) stays


def rejects_summary(rejects_path: Path, examples: int = 3) -> str:
    """What the last embedding run could not use, for a person: rejects counted by kind with a few paths each,
    then the label conflicts (``realrag rejects``)."""
    if not rejects_path.is_file():
        raise FileNotFoundError(f"no {rejects_path}: materialize image_embeddings first")
    rejects = pq.read_table(rejects_path).to_pylist()
    by_kind: dict[str, list[dict]] = {}
    for r in rejects:
        by_kind.setdefault(reason_kind(r["reason"]), []).append(r)
    when = rejects[0]["run_at"].isoformat(timespec="seconds") if rejects else "the last run"
    lines = [f"{len(rejects)} entries rejected by image_embeddings ({when}), {rejects_path}"]
    held_out = sum(r.get("role") == "reference" for r in rejects)
    if held_out:
        lines.append(
            f"  ({held_out} of them reference images, held out of the database: FID and the human study leave them out)"
        )
    for kind, rows in sorted(by_kind.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        lines.append(f"  {len(rows):6d}  {kind}")
        held = {True: " [held out]", False: ""}
        lines += [f"          {r['path']}: {r['reason']}{held[r.get('role') == 'reference']}" for r in rows[:examples]]
        if len(rows) > examples:
            lines.append(f"          ... and {len(rows) - examples} more")
    conflicts_path = rejects_path.with_name(f"{rejects_path.stem}_label_conflicts.parquet")
    if conflicts_path.is_file():
        conflicts = pq.read_table(conflicts_path).to_pylist()
        pictures = {c["image_sha256"] for c in conflicts}
        lines.append(f"{len(pictures)} picture(s) listed under two or more concepts, {conflicts_path}")
        for c in conflicts[: examples * 2]:
            lines.append(f"          {c['path']}: {c['concept']!r} of {c['concepts']} ({c['action']})")
    return "\n".join(lines)


def write_conflicts(conflicts: dict[str, list[dict]], drop: set[str], path: Path, run_at: datetime) -> None:
    rows = [
        {
            "image_sha256": h,
            "path": m["path"],
            "caption": m["caption"],
            "concept": m["concept"],
            "style": m["style"],
            "concepts": sorted({x["concept"] for x in listings}),
            "action": "dropped" if m["id"] in drop else "kept",
            "run_at": run_at,
        }
        for h, listings in sorted(conflicts.items())
        for m in sorted(listings, key=lambda m: m["position"])
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=CONFLICT_SCHEMA), tmp)
    tmp.replace(path)


class _Writer:
    """Buffers embedded rows and upserts them in large batches (few table versions, bounded memory)."""

    def __init__(self, table, schema: pa.Schema, model_id: str, flush_rows: int):
        self.table, self.schema, self.model_id, self.flush_rows = table, schema, model_id, flush_rows
        self.buffer: list[dict] = []
        self.written = 0

    def add(self, metas: list[dict], vectors: torch.Tensor) -> None:
        now = datetime.now(timezone.utc)
        for meta, vec in zip(metas, vectors.numpy()):
            self.buffer.append({**meta, "embedding": vec, "model_id": self.model_id, "added_at": now})
        if len(self.buffer) >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        columns = {f.name: [r[f.name] for r in self.buffer] for f in self.schema}
        upsert(self.table, pa.Table.from_pydict(columns, schema=self.schema))
        self.written += len(self.buffer)
        self.buffer = []


def write_rejects(rejects: list[dict], path: Path, run_at: datetime) -> None:
    """The current rejects, replacing the previous run's list (files still bad are rejected again)."""

    def text(value):  # names that are not UTF-8 (surrogate-escaped by the OS layer) are kept, marked with U+FFFD
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if isinstance(value, str) else value

    rows = {f.name: [text(r.get(f.name)) for r in rejects] for f in REJECT_SCHEMA if f.name != "run_at"}
    rows["run_at"] = [run_at] * len(rejects)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.Table.from_pydict(rows, schema=REJECT_SCHEMA), tmp)
    tmp.replace(path)


def embed_source(
    source_cfg,
    scope: Scope,
    clip: ClipBundle,
    *,
    uri: str,
    cfg: EmbeddingsConfig,
    rejects_path: Path,
    flush_rows: int = 2048,
    progress: bool = True,
) -> EmbedReport:
    start = time.perf_counter()
    run_at = datetime.now(timezone.utc)
    table, recreated = open_embedding_table(uri, cfg.table_name, clip.dim, clip.model_id, cfg.on_model_mismatch)
    stored = existing_paths(table)
    known = frozenset(stored)
    reference_path = rejects_path.with_name(f"{rejects_path.stem}_reference.parquet")
    known_reference = (
        frozenset(pq.read_table(reference_path, columns=["id"])["id"].to_pylist())
        if reference_path.is_file()
        else frozenset()
    )
    dataset = ImageReadDataset(
        source_cfg,
        scope,
        clip.preprocess,
        DecodeLimits(cfg.max_image_pixels, cfg.min_image_side, cfg.max_caption_chars),
        known,
        known_reference,
    )
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        collate_fn=collate_read_batch,
        # spawn, not fork: forking next to an open Lance table (tokio threads) can deadlock
        multiprocessing_context="spawn" if cfg.num_workers > 0 else None,
    )
    writer = _Writer(table, table_schema(clip.dim, clip.model_id), clip.model_id, flush_rows)
    labels = LabelConflicts(cfg.label_conflicts, sequential=cfg.num_workers == 0)
    seen: set[str] = set()
    present: set[str] = set()  # ids of every listed, readable image in scope (embedded now or before)
    skipped = duplicates = 0
    rejects: list[dict] = []
    reference: dict[str, dict] = {}  # id -> the first listing of each decodable reference image
    listed: dict[str, list[tuple[int, str]]] = {}  # id of a row already in the table -> where the listing has it
    bar = tqdm(desc="image_embeddings", unit="img", disable=not progress)
    try:
        for batch in loader:
            skipped += len(batch["skipped"])
            present.update(i["id"] for i in batch["skipped"])
            present.update(i["id"] for i in batch["ok"])
            rejects.extend(batch["rejects"])
            for meta in batch["skipped"]:
                labels.add(meta)
                listed.setdefault(meta["id"], []).append((meta["position"], meta["path"]))
            for meta in batch["checked"]:
                labels.add(meta)
                if meta["id"] not in reference or meta["position"] < reference[meta["id"]]["position"]:
                    reference[meta["id"]] = meta
            keep = []
            for i, meta in enumerate(batch["ok"]):
                if meta["id"] in seen:
                    duplicates += 1  # identical content and caption listed twice: one row
                    labels.add(meta)
                    continue
                seen.add(meta["id"])
                if labels.write_now(meta):
                    keep.append(i)
                labels.add(meta)
            if keep:
                vectors = clip.embed_pixels(batch["pixels"][keep])
                writer.add([batch["ok"][i] for i in keep], vectors)
            bar.update(len(batch["ok"]) + len(batch["skipped"]) + len(batch["checked"]) + len(batch["rejects"]))
            bar.set_postfix(new=writer.written + len(writer.buffer), skipped=skipped, rejected=len(rejects))
    finally:
        writer.flush()  # whatever was embedded before a failure is kept
        bar.close()
        write_rejects(rejects, rejects_path, run_at)
    conflicts, dropped, _ = labels.resolve()
    conflicts_path = rejects_path.with_name(f"{rejects_path.stem}_label_conflicts.parquet")
    write_conflicts(conflicts, dropped, conflicts_path, run_at)
    if dropped:
        by_id = {m["id"]: m for listings in conflicts.values() for m in listings}
        for i in sorted(dropped):
            others = sorted({m["concept"] for m in conflicts[by_id[i]["image_sha256"]]} - {by_id[i]["concept"]})
            meta = {k: by_id[i][k] for k in ("path", "caption", "concept", "style", "split", "role")}
            rejects.append(
                {**meta, "reason": f"label conflict: the same picture is also listed as {', '.join(others)}"}
            )
        write_rejects(rejects, rejects_path, run_at)
        delete_ids(table, dropped & (existing_ids(table)))
        present -= dropped
    write_reference(
        sorted((m for i, m in reference.items() if i not in dropped), key=lambda m: m["position"]),
        reference_path,
        run_at,
    )
    # a row whose picture is listed, but no longer where the row says (the clone or the source folder moved):
    # its path follows the listing (the first place listed), its vector stays
    moved = {
        i: min(places)[1]
        for i, places in listed.items()
        if i not in dropped and stored.get(i) not in {p for _, p in places}
    }
    paths_refreshed = refresh_paths(table, moved)
    repaired = repair_duplicates(table)
    removed, kept_stale = remove_missing(table, known - present - dropped, cfg.remove_missing)
    index = ensure_index(table, cfg.index)
    return EmbedReport(
        inserted=writer.written,
        skipped_unchanged=skipped,
        paths_refreshed=paths_refreshed,
        valid_images=len(present),
        removed=removed,
        stale_kept=kept_stale,
        duplicates_in_source=duplicates,
        rejected=len(rejects),
        rows=table.count_rows(),
        table_version=table.version,
        table_recreated=recreated,
        index=index,
        seconds=round(time.perf_counter() - start, 2),
        rejects_path=str(rejects_path),
        model_id=clip.model_id,
        duplicates_repaired=repaired,
        rejects_by_reason=dict(sorted(Counter(reason_kind(r["reason"]) for r in rejects).items())),
        label_conflicts=len(conflicts),
        label_conflict_rows_dropped=len(dropped),
        label_conflicts_path=str(conflicts_path),
        reference_checked=len(reference.keys() - dropped),
        reference_path=str(reference_path),
    )


def write_reference(listings: list[dict], path: Path, run_at: datetime) -> None:
    """The reference images stage 1 found decodable (and did not drop for a label conflict), replacing the last
    run's list."""
    rows = {f.name: [m[f.name] for m in listings] for f in REFERENCE_SCHEMA if f.name != "run_at"}
    rows["run_at"] = [run_at] * len(listings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.Table.from_pydict(rows, schema=REFERENCE_SCHEMA), tmp)
    tmp.replace(path)


def reference_listing(rejects_dir: Path) -> list[ImageRecord]:
    """The reference images (held out of the database) of the world's concepts that the last ``image_embeddings``
    run read and decoded without a reject, in source order: the real images FID and the human study may use. A
    broken file, or one dropped by ``embeddings.label_conflicts``, is not among them (``realrag rejects`` lists
    it)."""
    path = rejects_dir / "image_embeddings_reference.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: materialize image_embeddings first (it checks the reference images)")
    rows = pq.read_table(path, columns=["path", "caption", "concept", "style"]).to_pylist()
    return [ImageRecord(Path(r["path"]), r["caption"], r["concept"], r["style"]) for r in rows]

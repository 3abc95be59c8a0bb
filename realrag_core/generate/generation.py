"""Stage 2 kernel: G(T) without retrieval for the retriever's prompts, as PNG files plus a Parquet
manifest that carries each image's embedding from the same image tower that built the table.

Resumable: the manifest is a folder of Parquet parts, one per finished batch, written atomically; a rerun
skips every (prompt, seed, generator) already in it, so a crash loses at most one batch.
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
from realrag_core.generators.base import Generator
from realrag_core.storage.manifest import MANIFEST_DIR, append_part, read_manifest, save_png
from realrag_core.data.prompts import Prompt


def manifest_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("image_id", pa.string()),
            ("prompt_id", pa.string()),
            ("prompt", pa.string()),
            ("concept", pa.string()),
            ("generator_split", pa.string()),
            ("retriever_split", pa.string()),
            ("seed", pa.int64()),
            ("path", pa.string()),
            ("generator_id", pa.string()),
            ("encoder_id", pa.string()),
            ("embedding", pa.list_(pa.float32(), dim)),
        ]
    )


@dataclass
class GenerationReport:
    generated: int
    skipped_done: int
    total: int
    seconds: float
    manifest: str
    generator_calls: int = 0  # distinct (text, seed) generated: rows of prompts sharing a text share one image
    reembedded: int = 0  # images this generator made before, embedded again by a new image tower, not regenerated


def generate_for_prompts(
    generator: Generator,
    encoder: ClipBundle,
    prompts: Sequence[Prompt],
    seeds: Sequence[int],
    folder: Path,
    *,
    batch_size: int = 64,
    progress: bool = True,
    label: str = "generated_images",
) -> GenerationReport:
    start = time.perf_counter()
    done_table = read_manifest(folder)
    done, made_before = set(), {}
    if done_table is not None:
        columns = ("prompt_id", "seed", "generator_id", "encoder_id", "path", "image_id")
        for pid, seed, gid, eid, path, image_id in zip(*(done_table[c].to_pylist() for c in columns)):
            done.add((pid, seed, gid, eid))
            made_before[(pid, seed, gid)] = (path, image_id)
    gid, eid = generator.generator_id, encoder.model_id
    todo = [(p, s) for p in prompts for s in seeds if (p.prompt_id, s, gid, eid) not in done]

    def on_disk(p: Prompt, s: int) -> bool:
        found = made_before.get((p.prompt_id, s, gid))
        return found is not None and (folder / found[0]).is_file()

    # G(T) depends on the generator only: images it made before, embedded by another image tower (a new base CLIP),
    # are embedded again from their PNG files instead of generated again (a file that is gone is generated again)
    kept = [on_disk(p, s) for p, s in todo]
    again = [item for item, k in zip(todo, kept) if k]
    todo = [item for item, k in zip(todo, kept) if not k]
    schema = manifest_schema(encoder.dim)
    if again:
        _reembed(again, made_before, gid, encoder, folder, schema, batch_size, progress, label)
    # G(T) depends on (generator, text, seed) only (deterministic, batch-invariant): prompts that share a text
    # (the same template under two protocols) share one generation
    by_text: dict[tuple[str, int], list[tuple[Prompt, int]]] = {}
    for p, s in todo:
        by_text.setdefault((p.prompt, s), []).append((p, s))
    unique = list(by_text)
    bar = tqdm(total=len(unique), desc=label, unit="img", disable=not progress)
    for i in range(0, len(unique), batch_size):
        keys = unique[i : i + batch_size]
        made = generator.generate([text for text, _ in keys], None, [s for _, s in keys])
        made_emb = encoder.embed_images(made).numpy()
        chunk, images, embeddings = [], [], []
        for key, img, emb in zip(keys, made, made_emb):
            for item in by_text[key]:
                chunk.append(item)
                images.append(img)
                embeddings.append(emb)
        rows = {f.name: [] for f in schema}
        for (p, s), img, emb in zip(chunk, images, embeddings):
            rel = Path("images") / p.prompt_id / f"{s}.png"
            data = save_png(img, folder / rel)
            # unique per (prompt, seed, generator) even when two prompts give identical pixels
            key = f"{p.prompt_id}\x00{s}\x00{generator.generator_id}\x00".encode()
            image_id = hashlib.sha256(key + data).hexdigest()[:32]
            _add_row(rows, p, s, str(rel), image_id, generator.generator_id, encoder.model_id, emb)
        append_part(folder, rows, schema)
        bar.update(len(keys))
    bar.close()
    return GenerationReport(
        len(todo),
        len(prompts) * len(seeds) - len(todo) - len(again),
        len(prompts) * len(seeds),
        round(time.perf_counter() - start, 2),
        str(folder / MANIFEST_DIR),
        len(unique),
        len(again),
    )


def _add_row(rows: dict[str, list], p: Prompt, seed: int, path: str, image_id: str, generator_id, encoder_id, emb):
    for key, value in (
        ("image_id", image_id),
        ("prompt_id", p.prompt_id),
        ("prompt", p.prompt),
        ("concept", p.concept),
        ("generator_split", p.generator_split),
        ("retriever_split", p.retriever_split),
        ("seed", int(seed)),
        ("path", path),
        ("generator_id", generator_id),
        ("encoder_id", encoder_id),
        ("embedding", emb),
    ):
        rows[key].append(value)


def _reembed(items, made_before, generator_id, encoder, folder, schema, batch_size, progress, label) -> None:
    from PIL import Image

    bar = tqdm(total=len(items), desc=f"{label} (re-embed)", unit="img", disable=not progress)
    for i in range(0, len(items), batch_size):
        chunk = items[i : i + batch_size]
        found = [made_before[(p.prompt_id, s, generator_id)] for p, s in chunk]
        images = []
        for path, _ in found:
            with Image.open(folder / path) as img:
                images.append(img.convert("RGB"))
        rows = {f.name: [] for f in schema}
        for (p, s), (path, image_id), emb in zip(chunk, found, encoder.embed_images(images).numpy()):
            _add_row(rows, p, s, path, image_id, generator_id, encoder.model_id, emb)
        append_part(folder, rows, schema)
        bar.update(len(chunk))
    bar.close()


def current_generated_rows(manifest: pa.Table, generator_id: str, encoder_id: str) -> pa.Table:
    """The manifest rows of one generator's images as embedded by one image tower (the manifest keeps other
    generators' images and other towers' embeddings for reuse)."""
    import pyarrow.compute as pc

    keep = pc.and_(pc.equal(manifest["generator_id"], generator_id), pc.equal(manifest["encoder_id"], encoder_id))
    return manifest.filter(keep)


def read_current_generated(
    folder: Path,
    generator_id: str,
    *,
    prompts: Sequence[Prompt],
    seeds: Sequence[int],
    shard_count: int,
    encoder_id: str,
) -> pa.Table:
    """Stage 2's output as later stages read it: the manifest rows of ``generator_id`` embedded by ``encoder_id``
    (the image tower of the table they are compared with), in one order whatever runs wrote its parts, and only
    when every (prompt, seed) has its image (a clear error naming the shards to backfill otherwise)."""
    import pyarrow.compute as pc

    from realrag_core.data.shards import require_complete

    manifest = read_manifest(folder)
    if manifest is None:
        raise FileNotFoundError("no generated images: materialize generated_images first")
    of_generator = manifest.filter(pc.equal(manifest["generator_id"], generator_id))
    if of_generator.num_rows == 0:
        raise ValueError(
            f"no generated images of the current generator {generator_id!r}: rematerialize generated_images"
        )
    manifest = of_generator.filter(pc.equal(of_generator["encoder_id"], encoder_id))
    if manifest.num_rows == 0:
        raise ValueError(
            f"the generated images were embedded by {sorted(set(of_generator['encoder_id'].to_pylist()))}, the table "
            f"by {encoder_id!r}: rematerialize generated_images (it embeds the same images again, no regeneration)"
        )
    manifest = manifest.sort_by([("prompt_id", "ascending"), ("seed", "ascending"), ("image_id", "ascending")])
    expected = [(p.prompt_id, seed) for p in prompts for seed in seeds]
    require_complete(
        "generated_images", expected, zip(manifest["prompt_id"].to_pylist(), manifest["seed"].to_pylist()), shard_count
    )
    return manifest

"""Bad input: a corpus of damaged, odd and hostile files in one captions-file source. Each file's outcome is
written here (embedded, rejected with a reason, or deduplicated) and checked file by file after one run of the
embedding stage, which must go on past every one of them and list each reject with its reason."""

import csv
import io
import os
import struct
import zlib

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from realrag_core.clip.bundle import create_untrained, load_clip, save_clip
from realrag_core.data.sources.caption_file import CaptionFileSourceConfig
from realrag_core.config.stages import EmbeddingsConfig
from realrag_core.embed.embedding import embed_source
from realrag_core.embed.reader import Scope
from realrag_core.data.image_io import decode_image
from realrag_core.data.sources.synthetic import draw_concept
from realrag_core.embed.table import open_embedding_table

CAPTION = "red circle"
EMBED, DEDUPE = "embed", "dedupe"


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def tiff(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "TIFF")
    return buf.getvalue()


def bomb_header(width: int, height: int) -> bytes:
    """A small valid PNG whose header claims width x height pixels (a decompression bomb's shape)."""
    data = bytearray(png(Image.new("L", (16, 16))))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def exif_rotated() -> bytes:
    """A 48x24 drawing stored with EXIF orientation 6 (shown rotated by 90 degrees: 24x48)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return jpeg(draw_concept("red", "circle", "filled", 48).resize((48, 24)), exif=exif.tobytes())


def animated_gif() -> bytes:
    frames = [draw_concept("red", "circle", s, 32).convert("P") for s in ("filled", "shadow")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def palette_with_transparency() -> bytes:
    img = draw_concept("red", "circle", "filled", 32).convert("P")
    img.info["transparency"] = img.getpixel((0, 0))  # the white background becomes transparent
    return png(img)


@pytest.fixture
def corpus(tmp_path):
    """(image folder, captions file, {listed path: expected outcome}) with every kind of bad input."""
    root = tmp_path / "images"
    root.mkdir()
    drawing = png(draw_concept("red", "circle", "filled", 32))
    gray = png(draw_concept("red", "circle", "shadow", 32).convert("L"))
    full_jpeg = jpeg(draw_concept("red", "circle", "filled", 64))
    files = {
        "ok.png": drawing,
        "zero.png": b"",
        "truncated.jpg": full_jpeg[: len(full_jpeg) // 2],
        "truncated.png": drawing[: len(drawing) * 2 // 3],
        "png_named.jpg": png(draw_concept("red", "circle", "striped", 32)),
        "text.jpg": b"just some text, no pixels\n" * 10,
        "page.jpg": b"<!DOCTYPE html><html><body><img src='x.png'></body></html>",
        "one_pixel.png": png(Image.new("RGB", (1, 1), "red")),
        "bomb.png": bomb_header(100_000, 100_000),
        "cmyk.jpg": jpeg(draw_concept("red", "circle", "shadow", 32).convert("CMYK")),
        # 16-bit grey, embedded since issue 19 (it was rejected as "unsupported mode I;16" before)
        "sixteen_bit.png": png(Image.fromarray((np.arange(32 * 32).reshape(32, 32) * 64).astype(np.uint16))),
        "float.tif": tiff(Image.fromarray(np.linspace(-0.1, 1.1, 32 * 32, dtype=np.float32).reshape(32, 32))),
        "phone.heic": b"\x00\x00\x00\x18ftypheic" + bytes(200),  # an iPhone photo's header: no reader here
        "locked.png": png(draw_concept("red", "circle", "filled", 44)),  # read raises PermissionError (patched)
        "palette_alpha.png": palette_with_transparency(),
        "animated.gif": animated_gif(),
        "exif_rotated.jpg": exif_rotated(),
        "gray.png": gray,
        "copy_of_gray.png": gray,  # the same picture under another name, same caption
        "huge_caption.png": png(draw_concept("red", "circle", "striped", 40)),
        "empty_caption.png": png(draw_concept("red", "circle", "filled", 40)),
        "bad_utf8_caption.png": png(draw_concept("red", "circle", "shadow", 40)),
        "bücher-äpfel-火.png": png(draw_concept("red", "circle", "filled", 36)),
        "unlisted.png": png(draw_concept("red", "circle", "shadow", 36)),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    outside = tmp_path / "outside.png"
    outside.write_bytes(png(draw_concept("red", "circle", "striped", 36)))
    os.symlink(outside, root / "escape.png")  # a symlink leading out of the source folder
    (root / "folder.png").mkdir()  # a directory with an image's name
    os.symlink(root / "gone.png", root / "dangling.png")  # a link to nothing
    os.symlink(root / "loop_b.png", root / "loop_a.png")  # a loop of links
    os.symlink(root / "loop_a.png", root / "loop_b.png")
    os.mkfifo(root / "pipe.png")  # reading it would block forever: the listing must not open it
    expected = {
        "ok.png": EMBED,
        "zero.png": "empty file",
        "truncated.jpg": "truncated",
        "truncated.png": "truncated",
        "png_named.jpg": EMBED,  # content decides, not the extension
        "text.jpg": "not an image",
        "page.jpg": "not an image",
        "one_pixel.png": "too small",
        "bomb.png": "DecompressionBomb",
        "cmyk.jpg": EMBED,
        "sixteen_bit.png": EMBED,
        "float.tif": EMBED,
        "phone.heic": "a format Pillow cannot read",
        "locked.png": "permission denied",
        "dangling.png": "link that cannot be resolved: its target does not exist",
        "loop_a.png": "link that cannot be resolved: a loop of links",
        "loop_b.png": "link that cannot be resolved: a loop of links",
        "pipe.png": "not a regular file: a named pipe",
        "palette_alpha.png": EMBED,
        "animated.gif": EMBED,
        "exif_rotated.jpg": EMBED,
        "gray.png": EMBED,
        "copy_of_gray.png": DEDUPE,
        "huge_caption.png": "caption too long: 5000 characters",
        "empty_caption.png": "empty caption",
        "bad_utf8_caption.png": "not valid UTF-8",
        "bücher-äpfel-火.png": EMBED,
        "escape.png": "outside the source folder",
        "../outside.png": "outside the source folder",
        "ghost.png": "no such file",  # listed, no such file
        "folder.png": "a folder named like an image",
        "unlisted.png": "not listed in the captions file",  # a file, no caption
    }
    captions = tmp_path / "captions.csv"
    with captions.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "caption", "concept", "style"])
        for name in expected:
            if name in ("unlisted.png", "bad_utf8_caption.png"):
                continue
            caption = {"huge_caption.png": "x" * 5000, "empty_caption.png": ""}.get(name, CAPTION)
            writer.writerow([name, caption, "red circle", "filled"])
    with captions.open("ab") as fh:  # one row whose caption is Latin-1, not UTF-8
        fh.write(b"bad_utf8_caption.png,a red circle on caf\xe9 paper,red circle,filled\n")
    return root, captions, expected


def permission_denied_for(path, monkeypatch):
    """Reading ``path`` raises PermissionError, as an unreadable file does for a user who is not root (tests run
    as root, for whom chmod changes nothing)."""
    import pathlib

    real = pathlib.Path.read_bytes

    def read_bytes(self):
        if os.path.abspath(self) == os.path.abspath(path):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)


@pytest.fixture
def clip(smoke_cfg, tmp_path):
    folder = tmp_path / "clip"
    model, *_ = create_untrained(folder, smoke_cfg.clip.architecture, seed=0)
    save_clip(model, folder)
    return load_clip(folder)


def test_every_kind_of_bad_input_gets_its_own_outcome_and_the_run_goes_on(corpus, clip, tmp_path, monkeypatch):
    root, captions, expected = corpus
    permission_denied_for(root / "locked.png", monkeypatch)
    assert len(expected) >= 20 + 2  # twenty kinds of damage besides plain good files
    source = CaptionFileSourceConfig(image_dir=root, captions=captions)
    rejects_path = tmp_path / "rejects.parquet"
    report = embed_source(
        source,
        Scope(frozenset({"filled"}), {"red circle": "known"}),
        clip,
        uri=str(tmp_path / "db"),
        cfg=EmbeddingsConfig(batch_size=4, num_workers=0),
        rejects_path=rejects_path,
        progress=False,
    )
    table, _ = open_embedding_table(str(tmp_path / "db"), "image_embeddings", clip.dim, clip.model_id)
    rows = table.to_arrow().to_pylist()
    embedded = {os.path.relpath(r["path"], root) for r in rows}
    rejects = pq.read_table(rejects_path).to_pylist()
    reasons = {os.path.relpath(os.path.normpath(r["path"]), root): r["reason"] for r in rejects}
    for name, outcome in expected.items():
        if outcome == EMBED:
            assert name in embedded, (name, reasons.get(name))
        elif outcome == DEDUPE:
            assert name not in embedded and name not in reasons, name
        else:
            assert name not in embedded, name
            assert outcome in reasons.get(name, ""), (name, reasons.get(name))
    assert "gray.png" in embedded and report.duplicates_in_source == 1
    assert len(rows) == report.rows == sum(o == EMBED for o in expected.values())
    assert len(rejects) == report.rejected == sum(o not in (EMBED, DEDUPE) for o in expected.values())
    # the report counts them by kind (the reason before its first ":")
    assert sum(report.rejects_by_reason.values()) == report.rejected
    assert report.rejects_by_reason["link that cannot be resolved"] == 3  # dangling.png, loop_a.png, loop_b.png
    assert report.rejects_by_reason["not a regular file"] == 1
    assert report.rejects_by_reason["permission denied"] == 1
    [latin1] = [r for r in rejects if r["path"].endswith("bad_utf8_caption.png")]
    assert latin1["caption"] == "a red circle on caf\ufffd paper"  # kept readable in the rejects file
    # a second run: the table unchanged, the same rejects listed again (nothing lost, nothing doubled)
    again = embed_source(
        source,
        Scope(frozenset({"filled"}), {"red circle": "known"}),
        clip,
        uri=str(tmp_path / "db"),
        cfg=EmbeddingsConfig(batch_size=4, num_workers=0),
        rejects_path=rejects_path,
        progress=False,
    )
    assert again.inserted == 0 and again.rows == len(rows) and again.rejected == len(rejects)


def test_exif_orientation_animation_and_transparency_are_decoded_as_seen(corpus):
    root, _, _ = corpus
    upright, reason = decode_image((root / "exif_rotated.jpg").read_bytes())
    assert reason is None and upright.size == (24, 48)  # stored 48x24, shown rotated
    first, _ = decode_image((root / "animated.gif").read_bytes())
    assert first.mode == "RGB" and first.size == (32, 32)
    flat, _ = decode_image((root / "palette_alpha.png").read_bytes())
    assert flat.getpixel((0, 0)) == (255, 255, 255)  # transparent background on white, not black


def test_a_retriever_of_another_size_is_refused_before_any_query(clip, tmp_path):
    from realrag_core.config.stages import IndexConfig
    from realrag_core.data.prompts import Prompt
    from realrag_core.rag.retrieve import retrieve_top1

    table, _ = open_embedding_table(str(tmp_path / "db"), "image_embeddings", clip.dim + 8, "open_clip:other")
    with pytest.raises(
        ValueError, match=rf"{clip.dim} dimensions.*{clip.dim + 8}-dimensional embeddings of open_clip:other"
    ):
        retrieve_top1(clip, [Prompt("p", "a red circle", "", "", "", "")], table, IndexConfig())

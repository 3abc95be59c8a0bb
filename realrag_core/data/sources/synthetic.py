"""The smoke profile's tiny world, drawn on the fly: coloured shapes, each in several drawing styles.

It exists so that the whole pipeline runs offline in seconds without npm. Concepts are "a red circle",
"a blue star", ...; a style is a way of drawing (outline, filled, with a shadow, striped, dotted), playing
the part an artist plays in the demo world."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

from PIL import Image, ImageDraw
from pydantic import Field

from realrag_core.config.base import StrictModel
from realrag_core.data.captions import MANIFEST_NAME, write_manifest
from realrag_core.data.sources.kind import SourceKind
from realrag_core.data.sources.listing import built_records


class SyntheticSourceConfig(StrictModel):
    """A tiny procedurally drawn world (coloured shapes in several drawing styles) for smoke runs."""

    kind: Literal["synthetic"] = "synthetic"
    image_dir: Path
    num_concepts: int = Field(12, ge=4, le=64)
    styles: tuple[str, ...] = ("outline", "filled", "shadow", "striped", "dotted")
    image_size: int = Field(32, ge=16, le=256)


SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross", "ring", "hexagon")
COLOURS = {
    "red": (220, 40, 40),
    "blue": (40, 80, 220),
    "green": (40, 170, 60),
    "orange": (245, 140, 20),
    "purple": (140, 60, 190),
    "black": (30, 30, 30),
    "pink": (240, 120, 180),
    "teal": (20, 160, 160),
}


def concept_names(n: int) -> list[tuple[str, str]]:
    """The first n (colour, shape) pairs, walking diagonals so small worlds vary both attributes."""
    colours = list(COLOURS)
    pairs = []
    for k in range(len(SHAPES) * len(colours)):
        shape = SHAPES[k % len(SHAPES)]
        colour = colours[(k + k // len(SHAPES)) % len(colours)]
        pairs.append((colour, shape))
    return pairs[:n]


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    if shape == "hexagon":
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (i * math.pi / 3 for i in range(6))]
    if shape == "star":
        pts = []
        for i in range(10):
            rad = r if i % 2 == 0 else r * 0.45
            a = -math.pi / 2 + i * math.pi / 5
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
        return pts
    if shape == "cross":
        w = r * 0.35
        return [
            (cx - w, cy - r),
            (cx + w, cy - r),
            (cx + w, cy - w),
            (cx + r, cy - w),
            (cx + r, cy + w),
            (cx + w, cy + w),
            (cx + w, cy + r),
            (cx - w, cy + r),
            (cx - w, cy + w),
            (cx - r, cy + w),
            (cx - r, cy - w),
            (cx - w, cy - w),
        ]
    raise ValueError(shape)


def draw_concept(colour: str, shape: str, style: str, size: int) -> Image.Image:
    rgb = COLOURS[colour]
    scale = 4  # draw large, then downsample: anti-aliased edges like real artwork
    s = size * scale
    img = Image.new("RGB", (s, s), (255, 255, 255))
    d = ImageDraw.Draw(img)
    cx = cy = s / 2
    r = s * 0.34
    width = max(2, s // 14)

    def outline_and_fill(offset=(0, 0), fill=None, outline=None, w=0):
        ox, oy = offset
        if shape in ("circle", "ring"):
            box = [cx - r + ox, cy - r + oy, cx + r + ox, cy + r + oy]
            d.ellipse(box, fill=fill, outline=outline, width=w)
            if shape == "ring":
                inner = r * 0.5
                d.ellipse([cx - inner + ox, cy - inner + oy, cx + inner + ox, cy + inner + oy], fill=(255, 255, 255))
        else:
            pts = [(x + ox, y + oy) for x, y in _polygon(shape, cx, cy, r)]
            d.polygon(pts, fill=fill, outline=outline, width=w)

    if style == "outline":
        outline_and_fill(outline=rgb, w=width)
    elif style == "filled":
        outline_and_fill(fill=rgb)
    elif style == "shadow":
        outline_and_fill(offset=(s // 14, s // 14), fill=(160, 160, 160))
        outline_and_fill(fill=rgb)
    elif style == "striped":
        outline_and_fill(fill=rgb)
        for y in range(0, s, s // 8):
            d.line([(0, y), (s, y)], fill=(255, 255, 255), width=max(1, s // 32))
    elif style == "dotted":
        outline_and_fill(fill=tuple(int(c * 0.6 + 255 * 0.4) for c in rgb))
        step = s // 8
        for x in range(step // 2, s, step):
            for y in range(step // 2, s, step):
                if img.getpixel((x, y)) != (255, 255, 255):
                    d.ellipse([x - step // 5, y - step // 5, x + step // 5, y + step // 5], fill=rgb)
    else:
        # unknown style names still draw something distinct and deterministic
        outline_and_fill(fill=rgb, outline=(0, 0, 0), w=width // 2 + len(style) % 5)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def build_synthetic_world(cfg: SyntheticSourceConfig) -> dict:
    """Draw every concept in every style into ``cfg.image_dir``; skipped when already built identically."""
    out = Path(cfg.image_dir)
    stamp_path = out / "build.json"
    stamp = {"kind": "synthetic", **cfg.model_dump(mode="json", exclude={"image_dir"})}
    if stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp and (out / MANIFEST_NAME).is_file():
        return {"rebuilt": False, **_summary(out)}
    rows = []
    for colour, shape in concept_names(cfg.num_concepts):
        concept = f"{colour} {shape}"
        for style in cfg.styles:
            rel = f"{style}/{colour}-{shape}.png"
            (out / style).mkdir(parents=True, exist_ok=True)
            draw_concept(colour, shape, style, cfg.image_size).save(out / rel)
            rows.append({"path": rel, "caption": concept, "concept": concept, "style": style})
    write_manifest(out / MANIFEST_NAME, rows)
    stamp_path.write_text(json.dumps(stamp, indent=2))
    return {"rebuilt": True, **_summary(out)}


def _summary(out: Path) -> dict:
    import csv

    with (out / MANIFEST_NAME).open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {
        "images": len(rows),
        "concepts": len({r["concept"] for r in rows}),
        "styles": sorted({r["style"] for r in rows}),
        "manifest": str(out / MANIFEST_NAME),
    }


def _check_world(source: SyntheticSourceConfig, world) -> None:
    roles = world.styles
    used = set(roles.database) | set(roles.clip_pretrain) | ({roles.reference} - {None})
    missing = used - set(source.styles)
    if missing:
        raise ValueError(f"world.styles names styles the synthetic source does not draw: {sorted(missing)}")
    if world.num_concepts and world.num_concepts > source.num_concepts:
        raise ValueError(f"world.num_concepts {world.num_concepts} exceeds source.num_concepts {source.num_concepts}")


KIND = SourceKind(
    SyntheticSourceConfig,
    lambda source, with_errors=False: built_records(source.image_dir, with_errors),
    lambda source, progress=True: build_synthetic_world(source),
    check_world=_check_world,
)

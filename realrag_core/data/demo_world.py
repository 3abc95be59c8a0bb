"""The offline demo world: real-object emoji drawn by independent artists, from pinned npm packages.

The pinned packages and their fetching live in ``emoji_packages``. ``build_demo_world`` reads the tarballs in one streaming
pass each (no extraction to disk), renders every object concept on white at a fixed size, and writes
``captions.csv`` (path, caption, concept, style, concept_id, category, artist) plus the licences.

Set-up fetches the cache with ``python -m realrag_core.data.demo_setup fetch --cache .cache/emoji-npm``.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import re
import tarfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from realrag_core.data.image_io import flatten_on_white
from realrag_core.data.captions import MANIFEST_NAME, write_manifest
from realrag_core.data.emoji_packages import CREDITS, ICONIFY_MEMBER, ICONIFY_STYLES, PACKAGES, STYLES, fetch_packages


# --------------------------------------------------------------------------- concepts


def fluent_slug(name: str) -> str:
    """Fluent's file slug for a CLDR name: "woman’s hat" -> "womans-hat", "one o’clock" -> "one-oclock"."""
    name = re.sub(r"[’'.]", "", name.lower())
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")


@dataclass(frozen=True)
class Concept:
    concept_id: str  # unified code points, lower case: "1f6fb"
    name: str  # CLDR short name: "pickup truck"
    category: str
    members: dict  # style -> archive member path


def _read_member(tar_path: Path, member: str) -> bytes:
    with tarfile.open(tar_path, "r:gz") as tf:
        return tf.extractfile(member).read()


def _key(name: str) -> str:
    """Names compared without case, punctuation or spaces: "Pickup Truck", "pickup-truck", "pickuptruck"."""
    return re.sub(r"[^a-z0-9]", "", name.lower().replace("’", ""))


# Unicode names that match an icon drawn as another thing: the old sets draw PISTOL as a real gun, while the
# concept (CLDR "water pistol") is a toy.
NOT_BY_UNICODE_NAME = frozenset({"water pistol"})
# fxemoji names faces and whole animals "dog" / "dogside" (its upstream files carry the code points: "dog" is
# U+1F436 DOG FACE): where a "<name>side" icon exists, it is the animal and "<name>" is the face.
FXEMOJI_SIDE = "side"


def iconify_matches(style: str, icon_names, concepts: list[tuple[str, str, str]]) -> dict[str, str]:
    """Concept id -> icon name, matched by name only (the sets' ``chars`` maps are empty).

    ``concepts``: (concept id, CLDR name, Unicode name). A concept takes the icon named like its CLDR name, else
    like its Unicode name (never an alias or a short code: those collide, "cricket" -> the cricket game, "japan"
    -> the flag); an icon claimed by two concepts at the same rank goes to neither."""
    by_key: dict[str, str] = {}
    all_keys = {_key(n) for n in icon_names}
    for name in icon_names:
        key = _key(name)
        if style == "fxemoji" and key + FXEMOJI_SIDE in all_keys:
            key = _key(name + " face")  # "dog" is the dog's face; "dogside" becomes "dog" below
        elif style == "fxemoji" and key.endswith(FXEMOJI_SIDE) and key[: -len(FXEMOJI_SIDE)] in all_keys:
            key = key[: -len(FXEMOJI_SIDE)]
        by_key.setdefault(key, name)
    claims: dict[str, dict[int, list[str]]] = {}
    for cid, cldr, uname in concepts:
        ranks = [_key(cldr)] + ([_key(uname)] if uname and cldr not in NOT_BY_UNICODE_NAME else [])
        for rank, key in enumerate(ranks):
            if key in by_key:
                claims.setdefault(by_key[key], {}).setdefault(rank, []).append(cid)
                break
    out = {}
    for icon, by_rank in claims.items():
        best = by_rank[min(by_rank)]
        if len(set(best)) == 1:
            out[best[0]] = icon
    return out


def iconify_icons(tar_path: Path) -> dict:
    return json.loads(_read_member(tar_path, ICONIFY_MEMBER))


def list_concepts(tarballs: dict[str, Path], categories: tuple[str, ...]) -> list[Concept]:
    """Object concepts (no people, flags, symbols, skin tones) with the archive member of each style."""
    import emoji as emoji_lib

    entries = json.loads(_read_member(tarballs["noto"], "package/emoji.json"))
    iconify = {style: iconify_icons(tarballs[style]) for style in ICONIFY_STYLES if style in tarballs}
    members = {}
    for key in ("fluent_3d", "fluentui"):
        with tarfile.open(tarballs[key], "r:gz") as tf:
            members[key] = {m.name for m in tf.getmembers() if m.isfile()}
    concepts, unicode_names = [], []
    for e in entries:
        if e["category"] not in categories or not (e.get("has_img_google") and e.get("has_img_twitter")):
            continue
        char = "".join(chr(int(u, 16)) for u in e["unified"].split("-"))
        cldr = emoji_lib.EMOJI_DATA.get(char)
        if not cldr:
            continue
        name = cldr["en"].strip(":").replace("_", " ")
        unified = e["unified"].lower()
        found = {
            "noto": f"package/img/google/64/{e['image']}",
            "twemoji": f"package/img/twitter/64/{e['image']}",
        }
        for cand in (unified, unified.replace("-fe0f", ""), (e.get("non_qualified") or "").lower()):
            if cand and f"package/assets/{cand}.webp" in members["fluent_3d"]:
                found["fluent_3d"] = f"package/assets/{cand}.webp"
                break
        slug = fluent_slug(name)
        for style, folder in (("fluent_color", "modern"), ("fluent_flat", "flat")):
            member = f"package/icons/{folder}/{slug}.svg"
            if member in members["fluentui"]:
                found[style] = member
        concepts.append(Concept(unified, name, e["category"], found))
        unicode_names.append(e.get("name") or "")
    names = [(c.concept_id, c.name, e_name) for c, e_name in zip(concepts, unicode_names)]
    for style, data in iconify.items():
        usable = [n for n, icon in data["icons"].items() if not set(icon) & {"rotate", "hFlip", "vFlip"}]
        matched = iconify_matches(style, usable, names)
        for concept in concepts:
            if concept.concept_id in matched:
                concept.members[style] = f"{ICONIFY_MEMBER}#{matched[concept.concept_id]}"
    concepts.sort(key=lambda c: c.name)
    return concepts


# --------------------------------------------------------------------------- rendering


def render_artwork(data: bytes, member: str, size: int) -> Image.Image:
    """Artwork bytes (PNG, WebP or SVG) -> RGB square of ``size`` px, centred on white."""
    if member.endswith(".svg"):
        import cairosvg

        data = cairosvg.svg2png(bytestring=data, output_width=size * 4, output_height=size * 4)
    img = Image.open(io.BytesIO(data))
    img.load()
    img = flatten_on_white(img)
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
    return canvas


def iconify_svg(data: dict, name: str) -> bytes:
    """One icon of an Iconify JSON set as a standalone SVG document (its body in the set's view box)."""
    icon = data["icons"][name]
    left, top = icon.get("left", data.get("left", 0)), icon.get("top", data.get("top", 0))
    width, height = icon.get("width", data.get("width", 16)), icon.get("height", data.get("height", 16))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'viewBox="{left} {top} {width} {height}" width="{width}" height="{height}">{icon["body"]}</svg>'
    ).encode()


def _save(img: Image.Image, out_dir: str, targets: list[str]) -> int:
    for rel in targets:
        dest = Path(out_dir) / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        img.save(dest)
    return len(targets)


def _render_package(tar_path: str, wanted: dict[str, list[str]], out_dir: str, size: int) -> int:
    """One streaming pass over a tarball: render each wanted member to each of its output paths."""
    done = 0
    icons = {m.split("#", 1)[1]: t for m, t in wanted.items() if m.startswith(ICONIFY_MEMBER + "#")}
    if icons:
        data = json.loads(_read_member(Path(tar_path), ICONIFY_MEMBER))
        for name, targets in sorted(icons.items()):
            done += _save(render_artwork(iconify_svg(data, name), f"{name}.svg", size), out_dir, targets)
        return done
    with tarfile.open(tar_path, "r:gz") as tf:
        for member in tf:
            targets = wanted.get(member.name)
            if not targets:
                continue
            done += _save(render_artwork(tf.extractfile(member).read(), member.name, size), out_dir, targets)
    return done


def _write_licences(out: Path, tarballs: dict[str, Path]) -> None:
    lic = out / "LICENSES"
    lic.mkdir(parents=True, exist_ok=True)
    lines = ["# Licences of the demo world's artwork", ""]
    for style, (key, artist) in STYLES.items():
        pkg = PACKAGES[key]
        lines.append(f"- `{style}` ({artist}): npm `{pkg.spec}`, {pkg.licence}")
    lines += (
        [""]
        + [CREDITS[s] for s in CREDITS if s in STYLES]
        + [
            "",
            "Apple and Facebook artwork is not used (its licence does not allow it); neither are share-alike sets "
            "(OpenMoji, Emoji One v1: CC-BY-SA) nor any repackaging of Twemoji or Fluent (the reference and database artists).",
        ]
    )
    (out / "LICENSES.md").write_text("\n".join(lines) + "\n")
    for key, path in tarballs.items():
        with tarfile.open(path, "r:gz") as tf:
            names = {m.name for m in tf.getmembers()}
            if "package/LICENSE" in names:
                (lic / f"{PACKAGES[key].tarball[:-4]}.LICENSE.txt").write_bytes(
                    tf.extractfile("package/LICENSE").read()
                )


def build_demo_world(
    cache: Path, out: Path, size: int, categories: tuple[str, ...], *, workers: int = 2, progress=None
) -> dict:
    """Fetch (if needed), then render every object concept in every style it exists in."""
    out = Path(out)
    tarballs = fetch_packages(Path(cache))
    stamp = {
        "packages": {k: p.integrity for k, p in PACKAGES.items()},
        "size": size,
        "categories": list(categories),
        "builder": 2,
    }
    stamp_path = out / "build.json"
    if stamp_path.is_file() and (out / MANIFEST_NAME).is_file():
        if json.loads(stamp_path.read_text()).get("stamp") == stamp:
            return {"rebuilt": False, **json.loads(stamp_path.read_text())["summary"]}

    concepts = list_concepts(tarballs, categories)
    wanted: dict[str, dict[str, list[str]]] = {k: {} for k in PACKAGES}
    rows = []
    for c in concepts:
        for style, member in c.members.items():
            key, artist = STYLES[style]
            rel = f"{style}/{c.concept_id}.png"
            wanted[key].setdefault(member, []).append(rel)
            rows.append(
                {
                    "path": rel,
                    "caption": c.name,
                    "concept": c.name,
                    "style": style,
                    "concept_id": c.concept_id,
                    "category": c.category,
                    "artist": artist,
                }
            )
    out.mkdir(parents=True, exist_ok=True)
    # spawn: the host process may hold LanceDB/tokio threads, which fork does not copy safely
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_render_package, str(tarballs[k]), w, str(out), size) for k, w in wanted.items()]
        rendered = sum(f.result() for f in futures)
    _write_licences(out, tarballs)
    write_manifest(out / MANIFEST_NAME, rows)
    per_style = {s: sum(1 for r in rows if r["style"] == s) for s in STYLES}
    summary = {
        "images": rendered,
        "concepts": len(concepts),
        "concepts_in_all_styles": sum(1 for c in concepts if len(c.members) == len(STYLES)),
        "per_style": per_style,
        "manifest": str(out / MANIFEST_NAME),
    }
    stamp_path.write_text(json.dumps({"stamp": stamp, "summary": summary}, indent=2))
    return {"rebuilt": True, **summary}


def style_similarity(records, size: int = 32) -> list[dict]:
    """For each pair of styles, the median over the concepts both draw of the cosine similarity of their two
    images (grey-level pixels at ``size`` px, mean removed), beside the same for mismatched concepts. Designs of
    one lineage (renderings of one artwork, a repackaged set) score near 1; independent artists about 0.4-0.55 on
    the demo's emoji, unrelated concepts about 0.2 (README "The demo world")."""
    import itertools

    import numpy as np

    vectors: dict[tuple[str, str], np.ndarray] = {}
    for r in records:
        img = Image.open(r.path).convert("L").resize((size, size), Image.Resampling.BILINEAR)
        v = np.asarray(img, dtype=np.float32).ravel()
        v -= v.mean()
        vectors[(r.style, r.concept)] = v / (np.linalg.norm(v) + 1e-8)
    by_style: dict[str, set[str]] = {}
    for style, concept in vectors:
        by_style.setdefault(style, set()).add(concept)
    out = []
    for a, b in itertools.combinations(sorted(by_style), 2):
        shared = sorted(by_style[a] & by_style[b])
        if len(shared) < 2:
            continue
        same = [float(vectors[(a, c)] @ vectors[(b, c)]) for c in shared]
        other = [float(vectors[(a, c)] @ vectors[(b, d)]) for c, d in zip(shared, shared[1:] + shared[:1])]
        out.append(
            {
                "styles": (a, b),
                "concepts": len(shared),
                "same_concept": float(np.median(same)),
                "other_concept": float(np.median(other)),
            }
        )
    return out


def undeclared_lineages(records, artist_of, threshold: float = 0.8, size: int = 32) -> list[dict]:
    """Pairs of styles whose images of the same concept are near-identical (median similarity >= ``threshold``)
    but which ``artist_of`` does not name one artist: a role split across them would not be independent."""
    return [
        p
        for p in style_similarity(records, size)
        if p["same_concept"] >= threshold and artist_of(p["styles"][0]) != artist_of(p["styles"][1])
    ]

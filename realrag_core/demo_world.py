"""The offline demo world: real-object emoji drawn by independent artists, from pinned npm packages.

``fetch_packages`` runs ``npm pack`` for each pinned package into a cache folder and checks the tarball
against the registry's pinned sha512 integrity. ``build_demo_world`` reads the tarballs in one streaming
pass each (no extraction to disk), renders every object concept on white at a fixed size, and writes
``captions.csv`` (path, caption, concept, style, concept_id, category, artist) plus the licences.

Run as a module to fetch the cache only: ``python -m realrag_core.demo_world fetch --cache .cache/emoji-npm``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import multiprocessing
import re
import shutil
import subprocess
import tarfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .image_io import flatten_on_white
from .sources import MANIFEST_NAME, write_manifest


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    integrity: str  # the registry's dist.integrity, pinned
    licence: str

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def tarball(self) -> str:  # npm pack's file naming: scope folded in, '@' and '/' dropped
        return f"{self.name.lstrip('@').replace('/', '-')}-{self.version}.tgz"


PACKAGES = {
    "noto": NpmPackage(
        "emoji-datasource-google", "16.0.0",
        "sha512-ZRexfzs7MVoLnmzZmNsO4TKhnAJp5D++Vm6PpUpH/jEQQlemp3l88CjZ+DoZ2faM9R4QxZkOPJCoT8DlPhfQ3A==",
        "Apache-2.0 (Noto Emoji images, Google)",
    ),
    "twemoji": NpmPackage(
        "emoji-datasource-twitter", "16.0.0",
        "sha512-7F+uCuHH+7Qnrc15P5tnbvKkg9E6tlzi4MnT2uW1RlN4pLYTza6cP/dstIfSDMtpjFLWuZewWg8jBbuL2eyELQ==",
        "CC-BY-4.0 (Twemoji images, Twitter, Inc and other contributors)",
    ),
    "fluent_3d": NpmPackage(
        "@lobehub/fluent-emoji-3d", "1.1.0",
        "sha512-Wlq2lVStTnr8BDpIJ0pEnTKO4LuDxxqTEhTvRtD1DLRF0me7ogeRQjKoehDHXuVJ2Qaecgl5wRBv60lUAG3h7g==",
        "MIT (Fluent Emoji, Microsoft)",
    ),
    "fluentui": NpmPackage(
        "fluentui-emoji", "1.3.0",
        "sha512-JTXXwqIie2rWTgOkIJDJxr0WtwTz2WU4kdOq8buLVThYwQ264aFR2jdTyuon2oEbLqqGMT64zI4btyn1saB2xw==",
        "MIT (Fluent Emoji, Microsoft)",
    ),
}  # fmt: skip

# style -> (package key, artist). The three Fluent renderings are one artist's designs.
STYLES = {
    "noto": ("noto", "google"),
    "twemoji": ("twemoji", "twitter"),
    "fluent_3d": ("fluent_3d", "microsoft"),
    "fluent_color": ("fluentui", "microsoft"),
    "fluent_flat": ("fluentui", "microsoft"),
}

TWEMOJI_CREDIT = (
    "Twemoji graphics (c) Twitter, Inc and other contributors, licensed under CC-BY 4.0: "
    "https://creativecommons.org/licenses/by/4.0/ . Source: https://github.com/twitter/twemoji"
)


class IntegrityError(RuntimeError):
    pass


def sri_sha512(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def verify_tarball(path: Path, pkg: NpmPackage) -> None:
    actual = sri_sha512(path)
    if actual != pkg.integrity:
        raise IntegrityError(f"{path.name}: integrity {actual[:24]}... does not match the pinned {pkg.integrity[:24]}...")


def fetch_packages(cache: Path, packages: dict[str, NpmPackage] = PACKAGES) -> dict[str, Path]:
    """``npm pack`` each pinned package into ``cache`` unless a verified tarball is already there."""
    cache.mkdir(parents=True, exist_ok=True)
    out = {}
    for key, pkg in packages.items():
        path = cache / pkg.tarball
        if path.is_file():
            try:
                verify_tarball(path, pkg)
                out[key] = path
                continue
            except IntegrityError:
                path.unlink()  # a partial or tampered download: fetch again
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(
                f"npm is needed to fetch {pkg.spec} into {cache} (or place the verified tarball there by hand)"
            )
        proc = subprocess.run(
            [npm, "pack", pkg.spec, "--pack-destination", str(cache), "--silent"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if proc.returncode != 0 or not path.is_file():
            raise RuntimeError(f"npm pack {pkg.spec} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        verify_tarball(path, pkg)
        out[key] = path
    return out


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


def list_concepts(tarballs: dict[str, Path], categories: tuple[str, ...]) -> list[Concept]:
    """Object concepts (no people, flags, symbols, skin tones) with the archive member of each style."""
    import emoji as emoji_lib

    entries = json.loads(_read_member(tarballs["noto"], "package/emoji.json"))
    members = {}
    for key in ("fluent_3d", "fluentui"):
        with tarfile.open(tarballs[key], "r:gz") as tf:
            members[key] = {m.name for m in tf.getmembers() if m.isfile()}
    concepts = []
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


def _render_package(tar_path: str, wanted: dict[str, list[str]], out_dir: str, size: int) -> int:
    """One streaming pass over a tarball: render each wanted member to each of its output paths."""
    done = 0
    with tarfile.open(tar_path, "r:gz") as tf:
        for member in tf:
            targets = wanted.get(member.name)
            if not targets:
                continue
            img = render_artwork(tf.extractfile(member).read(), member.name, size)
            for rel in targets:
                dest = Path(out_dir) / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                img.save(dest)
                done += 1
    return done


def _write_licences(out: Path, tarballs: dict[str, Path]) -> None:
    lic = out / "LICENSES"
    lic.mkdir(parents=True, exist_ok=True)
    lines = ["# Licences of the demo world's artwork", ""]
    for style, (key, artist) in STYLES.items():
        pkg = PACKAGES[key]
        lines.append(f"- `{style}` ({artist}): npm `{pkg.spec}`, {pkg.licence}")
    lines += ["", TWEMOJI_CREDIT, "", "Apple and Facebook artwork is not used (its licence does not allow it)."]
    (out / "LICENSES.md").write_text("\n".join(lines) + "\n")
    for key, path in tarballs.items():
        with tarfile.open(path, "r:gz") as tf:
            names = {m.name for m in tf.getmembers()}
            if "package/LICENSE" in names:
                (lic / f"{PACKAGES[key].tarball[:-4]}.LICENSE.txt").write_bytes(tf.extractfile("package/LICENSE").read())


def build_demo_world(
    cache: Path, out: Path, size: int, categories: tuple[str, ...], workers: int = 2, progress=None
) -> dict:
    """Fetch (if needed), then render every object concept in every style it exists in."""
    out = Path(out)
    tarballs = fetch_packages(Path(cache))
    stamp = {
        "packages": {k: p.integrity for k, p in PACKAGES.items()},
        "size": size,
        "categories": list(categories),
        "builder": 1,
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
                {"path": rel, "caption": c.name, "concept": c.name, "style": style,
                 "concept_id": c.concept_id, "category": c.category, "artist": artist}
            )  # fmt: skip
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m realrag_core.demo_world")
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="npm pack the pinned packages into a cache folder and verify them")
    f.add_argument("--cache", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.cmd == "fetch":
        for key, path in fetch_packages(args.cache).items():
            print(f"{key:10s} {path}  ({path.stat().st_size / 1e6:.1f} MB, integrity ok)")


if __name__ == "__main__":
    main()

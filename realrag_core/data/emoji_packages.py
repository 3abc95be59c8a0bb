"""The demo world's pinned npm packages (name, version, the registry's sha512 integrity, licence), which artist drew
each style, their credits, and fetching them with ``npm pack`` into a checked cache."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


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
        "emoji-datasource-google",
        "16.0.0",
        "sha512-ZRexfzs7MVoLnmzZmNsO4TKhnAJp5D++Vm6PpUpH/jEQQlemp3l88CjZ+DoZ2faM9R4QxZkOPJCoT8DlPhfQ3A==",
        "Apache-2.0 (Noto Emoji images, Google)",
    ),
    "twemoji": NpmPackage(
        "emoji-datasource-twitter",
        "16.0.0",
        "sha512-7F+uCuHH+7Qnrc15P5tnbvKkg9E6tlzi4MnT2uW1RlN4pLYTza6cP/dstIfSDMtpjFLWuZewWg8jBbuL2eyELQ==",
        "CC-BY-4.0 (Twemoji images, Twitter, Inc and other contributors)",
    ),
    "fluent_3d": NpmPackage(
        "@lobehub/fluent-emoji-3d",
        "1.1.0",
        "sha512-Wlq2lVStTnr8BDpIJ0pEnTKO4LuDxxqTEhTvRtD1DLRF0me7ogeRQjKoehDHXuVJ2Qaecgl5wRBv60lUAG3h7g==",
        "MIT (Fluent Emoji, Microsoft)",
    ),
    "fluentui": NpmPackage(
        "fluentui-emoji",
        "1.3.0",
        "sha512-JTXXwqIie2rWTgOkIJDJxr0WtwTz2WU4kdOq8buLVThYwQ264aFR2jdTyuon2oEbLqqGMT64zI4btyn1saB2xw==",
        "MIT (Fluent Emoji, Microsoft)",
    ),
    # More artists, for pre-training only (issue 16). Iconify JSON sets: SVG bodies keyed by a name, matched to
    # the concepts by name (``iconify_matches``). None repackages Twemoji or Fluent (the reference and database
    # artists); no share-alike licence (emojione-v1 and openmoji are CC-BY-SA: not used).
    "noto_v1": NpmPackage(
        "@iconify-json/noto-v1",
        "1.2.5",
        "sha512-/DsVMius69Q0fRS53z7QK1TROSuar606jiIx+laXtdsYGMXpf6LtHBx6CGfoo3UHHb/XpBsw+1L1x3eyPqMuVA==",
        "Apache-2.0 (Noto Emoji v1 images, Google)",
    ),
    "emojione": NpmPackage(
        "@iconify-json/emojione",
        "1.2.3",
        "sha512-T9+T3HIbJNLKKsmxYKlaYhvnHYkz/HNYTV7SHCXVZPfeUi4FqskY70YeN8yYAZT8cCv7w5vJxS4Q1m8zb9CMMg==",
        "CC-BY-4.0 (Emoji One 2.3 artwork, Ranks.com)",
    ),
    "fxemoji": NpmPackage(
        "@iconify-json/fxemoji",
        "1.2.2",
        "sha512-UAasRaxzFUKfIGSmLwnoarsssA4LX0VLLuEmplIqM6ZNQqIQRtav8tZ4H1neTlBreXuMQyAifr5jP4kn78DpiQ==",
        "CC-BY-4.0 artwork (Firefox OS Emoji, Mozilla; the package's metadata says Apache-2.0, which covers the code)",
    ),
    "streamline": NpmPackage(
        "@iconify-json/streamline-emojis",
        "1.2.4",
        "sha512-iNr9T9XuZVTyQPJO8ZlLxBzPkpi7qMl+z1l0C31vpEMqhPMelth3n7CeWQYtixdetDPdI81yeG4ROqjWpYJE6A==",
        "CC-BY-4.0 (Streamline Emojis, Webalys)",
    ),
}

# style -> (package key, artist). The three Fluent renderings are one artist's designs, and so are Google's two
# Noto generations (one lineage; tests/test_demo_world.py flags undeclared near-identical styles).
STYLES = {
    "noto": ("noto", "google"),
    "twemoji": ("twemoji", "twitter"),
    "fluent_3d": ("fluent_3d", "microsoft"),
    "fluent_color": ("fluentui", "microsoft"),
    "fluent_flat": ("fluentui", "microsoft"),
    "noto_v1": ("noto_v1", "google"),
    "emojione": ("emojione", "emojione"),
    "fxemoji": ("fxemoji", "mozilla"),
    "streamline": ("streamline", "streamline"),
}

ICONIFY_STYLES = ("noto_v1", "emojione", "fxemoji", "streamline")

ICONIFY_MEMBER = "package/icons.json"

CREDITS = {
    "twemoji": "Twemoji graphics (c) Twitter, Inc and other contributors, licensed under CC-BY 4.0: "
    "https://creativecommons.org/licenses/by/4.0/ . Source: https://github.com/twitter/twemoji",
    "emojione": "Emoji One 2.3 artwork (c) Ranks.com Inc., licensed under CC-BY 4.0: "
    "https://creativecommons.org/licenses/by/4.0/ . Source: https://github.com/EmojiTwo/emojitwo",
    "fxemoji": "Firefox OS Emoji artwork (c) Mozilla Foundation, licensed under CC-BY 4.0: "
    "https://creativecommons.org/licenses/by/4.0/ . Source: https://github.com/mozilla/fxemoji",
    "streamline": "Streamline Emojis (c) Webalys LLC, licensed under CC-BY 4.0: "
    "https://creativecommons.org/licenses/by/4.0/ . Source: https://github.com/webalys-hq/streamline-vectors",
}

TWEMOJI_CREDIT = CREDITS["twemoji"]


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
        raise IntegrityError(
            f"{path.name}: integrity {actual[:24]}... does not match the pinned {pkg.integrity[:24]}..."
        )


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
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0 or not path.is_file():
            raise RuntimeError(f"npm pack {pkg.spec} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        verify_tarball(path, pkg)
        out[key] = path
    return out

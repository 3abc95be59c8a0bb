"""The demo-world builder. Pure parts always; the real packages when .cache/emoji-npm holds them
(README command 2 fetches them before the tests)."""

import csv
import io

import pytest
from PIL import Image

from realrag_core import demo_world
from realrag_core.config import PROJECT_ROOT
from realrag_core.demo_world import (
    PACKAGES,
    IntegrityError,
    NpmPackage,
    build_demo_world,
    fetch_packages,
    fluent_slug,
    render_artwork,
    verify_tarball,
)

CACHE = PROJECT_ROOT / ".cache" / "emoji-npm"
HAVE_CACHE = all((CACHE / p.tarball).is_file() for p in PACKAGES.values())


def test_fluent_slugs_follow_the_package_naming():
    assert fluent_slug("pickup truck") == "pickup-truck"
    assert fluent_slug("woman’s hat") == "womans-hat"
    assert fluent_slug("one o’clock") == "one-oclock"
    assert fluent_slug("globe showing Europe-Africa") == "globe-showing-europe-africa"


def test_tarball_names_match_npm_pack():
    assert PACKAGES["fluent_3d"].tarball == "lobehub-fluent-emoji-3d-1.1.0.tgz"
    assert PACKAGES["noto"].tarball == "emoji-datasource-google-16.0.0.tgz"


def test_tampered_tarball_is_refused(tmp_path):
    pkg = PACKAGES["noto"]
    fake = tmp_path / pkg.tarball
    fake.write_bytes(b"not the real package")
    with pytest.raises(IntegrityError, match="does not match"):
        verify_tarball(fake, pkg)


def test_cached_tarball_with_wrong_hash_is_fetched_again(tmp_path, monkeypatch):
    """A corrupt cache entry is deleted and npm is asked again (here: npm missing -> a clear error)."""
    pkg = NpmPackage("left-pad", "1.3.0", "sha512-AAAA", "WTFPL")
    (tmp_path / pkg.tarball).write_bytes(b"partial download")
    monkeypatch.setattr(demo_world.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="npm is needed"):
        fetch_packages(tmp_path, {"x": pkg})
    assert not (tmp_path / pkg.tarball).exists()


def test_render_svg_and_transparent_png_on_white():
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><circle cx="5" cy="5" r="2" fill="#f00"/></svg>'
    img = render_artwork(svg, "x.svg", 32)
    assert img.size == (32, 32) and img.getpixel((0, 0)) == (255, 255, 255)
    r, g, b = img.getpixel((16, 16))
    assert r > 200 and g < 60 and b < 60
    buf = io.BytesIO()
    Image.new("RGBA", (64, 32), (0, 0, 255, 255)).save(buf, format="WEBP", lossless=True)
    wide = render_artwork(buf.getvalue(), "y.webp", 32)
    assert wide.size == (32, 32)
    assert wide.getpixel((16, 2)) == (255, 255, 255) and wide.getpixel((16, 16))[2] > 200  # letterboxed


@pytest.mark.skipif(not HAVE_CACHE, reason="demo npm packages not in .cache/emoji-npm (run scripts/setup.sh)")
def test_real_packages_build_the_demo_world(tmp_path):
    for pkg in PACKAGES.values():
        verify_tarball(CACHE / pkg.tarball, pkg)
    out = tmp_path / "world"
    summary = build_demo_world(CACHE, out, 32, ("Travel & Places",))
    assert summary["rebuilt"] and summary["concepts"] > 150
    rows = list(csv.DictReader((out / "captions.csv").open()))
    assert len(rows) == summary["images"]
    by_id = {(r["concept_id"], r["style"]): r for r in rows}
    truck = by_id[("1f6fb", "fluent_flat")]
    assert truck["caption"] == "pickup truck" and truck["artist"] == "microsoft"
    assert {s for (cid, s) in by_id if cid == "1f6fb"} == {"noto", "twemoji", "fluent_3d", "fluent_color", "fluent_flat"}
    img = Image.open(out / truck["path"])
    assert img.size == (32, 32) and img.mode == "RGB" and img.getpixel((0, 0)) == (255, 255, 255)
    assert len(set(img.getdata())) > 10  # real artwork, not a blank square
    assert "CC-BY" in (out / "LICENSES.md").read_text() and "Twemoji" in (out / "LICENSES.md").read_text()
    assert "Apple" in (out / "LICENSES.md").read_text()  # the exclusion is documented
    assert not any(r["artist"] in ("apple", "facebook") for r in rows)
    # a second build with the same packages and settings reuses the images
    assert build_demo_world(CACHE, out, 32, ("Travel & Places",))["rebuilt"] is False


@pytest.mark.skipif(not HAVE_CACHE, reason="demo npm packages not in .cache/emoji-npm")
def test_real_packages_hold_about_850_object_concepts():
    tarballs = {k: CACHE / p.tarball for k, p in PACKAGES.items()}
    from realrag_core.demo_world import STYLES, list_concepts
    from realrag_core.config import EmojiDemoSourceConfig

    concepts = list_concepts(tarballs, EmojiDemoSourceConfig.model_fields["categories"].default)
    assert 800 <= len(concepts) <= 900
    complete = [c for c in concepts if set(c.members) == set(STYLES)]
    assert len(complete) >= 800
    assert len({c.name for c in concepts}) == len(concepts)  # captions are unique readable names

"""Decode and validate one image file; a bad file becomes a reason, never an exception."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Modes Pillow itself converts to RGB (8 bits a channel already, or a colour space it knows).
EIGHT_BIT_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "La", "RGBa"})
# High-bit-depth greyscale, which Pillow's own convert("RGB") clips to 255 (a 16-bit scan turns white): scaled
# here by the mode's range instead (:func:`to_8bit`). 16-bit colour PNGs and TIFFs open as "RGB" already, Pillow
# keeping each sample's high byte, which is the same scaling.
HIGH_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
# CIELAB (TIFF): to sRGB through LittleCMS (Pillow's ImageCms), as colour-managed tools do.
COLOUR_MANAGED_MODES = frozenset({"LAB"})
SUPPORTED_MODES = EIGHT_BIT_MODES | HIGH_BIT_MODES | COLOUR_MANAGED_MODES


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int = 50_000_000
    min_side: int = 8
    max_caption_chars: int = 2_000


def flatten_on_white(img: Image.Image) -> Image.Image:
    """RGB on a white background: transparent artwork (emoji, logos) must not turn black."""
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def to_8bit(img: Image.Image) -> Image.Image:
    """An "L" image from a high-bit-depth greyscale one, the way scikit-image's ``img_as_ubyte`` does it:
    unsigned 16-bit by its range (``v // 256``: 65535 -> 255, nothing clipped); float by its [0, 1] range
    (``rint(clip(v, 0, 1) * 255)``); 32-bit integer ("I") by the 16-bit range when every value fits in it
    (Pillow opens 16-bit PGM and some 16-bit PNG/TIFF files as "I"), else by the signed 32-bit range."""
    if img.mode not in HIGH_BIT_MODES:
        return img
    if img.mode == "F":
        values = np.asarray(img, dtype=np.float64)
        values = np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0)
        out = np.rint(np.clip(values, 0.0, 1.0) * 255.0)
    elif img.mode == "I":
        values = np.asarray(img, dtype=np.int64)
        fits_16 = values.size == 0 or (values.min() >= 0 and values.max() <= 0xFFFF)
        out = values // 256 if fits_16 else (values + 2**31) // 2**24
    else:  # "I;16" and its byte orders
        out = np.asarray(img).astype(np.uint32) // 256
    return Image.fromarray(out.astype(np.uint8))  # 2-D uint8: mode "L"


def lab_to_rgb(img: Image.Image) -> Image.Image:
    """A CIELAB image in sRGB (LittleCMS, perceptual intent)."""
    from PIL import ImageCms

    transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
    return ImageCms.applyTransform(img, transform)


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB from any supported mode: high bit depth scaled by its range, CIELAB colour-managed, transparency
    on white."""
    return flatten_on_white(lab_to_rgb(img) if img.mode == "LAB" else to_8bit(img))


def decode_image(data: bytes, limits: DecodeLimits = DecodeLimits()) -> tuple[Image.Image | None, str | None]:
    """Return ``(rgb_image, None)`` or ``(None, reason)`` for the bytes of one file."""
    if not data:
        return None, "empty file (0 bytes)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            probe = Image.open(io.BytesIO(data))
            width, height = probe.size
            mode = probe.mode
            fmt = probe.format
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return None, f"not an image, or a format Pillow cannot read: {type(err).__name__}"
    except Exception as err:  # noqa: BLE001 - any decoder failure is a reject reason
        return None, f"unreadable header: {type(err).__name__}: {err}"
    if width * height > limits.max_pixels:
        return None, f"absurd dimensions: {width}x{height} (> {limits.max_pixels} pixels)"
    if min(width, height) < limits.min_side:
        return None, f"too small: {width}x{height} (< {limits.min_side} px side)"
    if mode not in SUPPORTED_MODES:
        return None, f"unsupported mode: {mode} ({fmt})"
    try:
        img = Image.open(io.BytesIO(data))
        img.load()  # truncated or corrupt pixel data fails here, not later in a worker
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)  # an animation: its first frame
        try:
            img = ImageOps.exif_transpose(img)  # a photo tagged as rotated is embedded upright
        except Exception:  # noqa: BLE001 - a broken EXIF block leaves the pixels as stored
            pass
        return to_rgb(img), None
    except Exception as err:  # noqa: BLE001
        return None, f"corrupt or truncated pixel data: {type(err).__name__}: {err}"

"""Decode and validate one image file; a bad file becomes a reason, never an exception."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

# Modes that convert to RGB without guessing a scale. 16-bit and float modes ("I;16", "I", "F") have
# no agreed mapping to 8-bit colour, so they are rejected rather than silently clipped.
SUPPORTED_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "La", "RGBa"})


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
        return None, f"not an image or unreadable header: {type(err).__name__}"
    except Exception as err:  # noqa: BLE001 - any decoder failure is a reject reason
        return None, f"unreadable header: {type(err).__name__}: {err}"
    if width * height > limits.max_pixels:
        return None, f"absurd dimensions {width}x{height} (> {limits.max_pixels} pixels)"
    if min(width, height) < limits.min_side:
        return None, f"too small {width}x{height} (< {limits.min_side} px side)"
    if mode not in SUPPORTED_MODES:
        return None, f"unsupported mode {mode} ({fmt})"
    try:
        img = Image.open(io.BytesIO(data))
        img.load()  # truncated or corrupt pixel data fails here, not later in a worker
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)  # an animation: its first frame
        try:
            img = ImageOps.exif_transpose(img)  # a photo tagged as rotated is embedded upright
        except Exception:  # noqa: BLE001 - a broken EXIF block leaves the pixels as stored
            pass
        return flatten_on_white(img), None
    except Exception as err:  # noqa: BLE001
        return None, f"corrupt or truncated pixel data: {type(err).__name__}: {err}"

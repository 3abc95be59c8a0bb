import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from realrag_core.data.image_io import DecodeLimits, decode_image


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_valid_rgba_is_flattened_on_white():
    img = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    img.putpixel((0, 0), (255, 0, 0, 255))
    out, reason = decode_image(_png(img))
    assert reason is None and out.mode == "RGB"
    assert out.getpixel((5, 5)) == (255, 255, 255)  # transparent -> white, not black
    assert out.getpixel((0, 0)) == (255, 0, 0)


def test_each_kind_of_damage_has_a_reason():
    good = _png(Image.new("RGB", (32, 32), "blue"))
    cases = {
        b"": "empty file",
        good[: len(good) // 2]: "truncated",
        b"hello, not pixels": "not an image",
        _png(Image.new("RGB", (4, 4))): "too small",
    }
    for data, expected in cases.items():
        img, reason = decode_image(data)
        assert img is None and expected in reason, (expected, reason)


def test_absurd_dimensions_are_rejected_before_decoding():
    data = _png(Image.new("L", (600, 600)))
    img, reason = decode_image(data, DecodeLimits(max_pixels=100_000, min_side=8))
    assert img is None and "absurd dimensions: 600x600" in reason


# High bit depth (issue 19, item 2): each mode against a reference conversion written here in numpy, the way
# scikit-image's img_as_ubyte maps it to 8 bits (unsigned integers by their range, float by [0, 1], clipped).


def _png16_rgb(arr: np.ndarray) -> bytes:
    """A 48-bit RGB PNG written by hand (Pillow cannot write one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _tiff16_rgb(arr: np.ndarray) -> bytes:
    """A little-endian, uncompressed 48-bit RGB TIFF written by hand (one strip)."""
    h, w, _ = arr.shape
    pixels = arr.astype("<u2").tobytes()
    entries = [  # tag, type (3 SHORT, 4 LONG), count, value or offset
        (256, 4, 1, w),
        (257, 4, 1, h),
        (258, 3, 3, None),  # BitsPerSample 16,16,16 (stored after the IFD)
        (259, 3, 1, 1),
        (262, 3, 1, 2),
        (273, 4, 1, None),  # StripOffsets
        (277, 3, 1, 3),
        (278, 4, 1, h),
        (279, 4, 1, len(pixels)),
        (284, 3, 1, 1),
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    bits_at = 8 + ifd_size
    pixels_at = bits_at + 6
    out = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    for tag, kind, count, value in entries:
        value = bits_at if tag == 258 else pixels_at if tag == 273 else value
        packed = struct.pack("<HI", value, 0)[:4] if kind == 3 and count == 1 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, count) + packed
    out += struct.pack("<I", 0) + struct.pack("<HHH", 16, 16, 16) + pixels
    return bytes(out)


def _tiff(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="TIFF")
    return buf.getvalue()


RNG = np.random.default_rng(19)
GREY16 = RNG.integers(0, 65536, (16, 16)).astype(np.uint16)
GREY16[0, :4] = [0, 255, 256, 65535]  # the ends and the first step of the scale
RGB16 = RNG.integers(0, 65536, (16, 16, 3)).astype(np.uint16)
FLOAT = RNG.uniform(-0.25, 1.25, (16, 16)).astype(np.float32)  # a quarter outside [0, 1] on each side
FLOAT[0, :3] = [0.5 / 255, 1.5 / 255, 1.0]


def _grey_rgb(values: np.ndarray) -> np.ndarray:
    return np.repeat(values.astype(np.uint8)[..., None], 3, axis=2)


@pytest.mark.parametrize(
    "name, data, expected",
    [
        ("16-bit grey PNG", lambda: _png(Image.fromarray(GREY16)), lambda: _grey_rgb(GREY16 // 256)),
        ("16-bit grey TIFF", lambda: _tiff(Image.fromarray(GREY16)), lambda: _grey_rgb(GREY16 // 256)),
        (
            "16-bit grey TIFF, big-endian",
            lambda: _tiff(Image.frombytes("I;16B", (16, 16), GREY16.astype(">u2").tobytes())),
            lambda: _grey_rgb(GREY16 // 256),
        ),
        (
            "16-bit PGM (Pillow opens it as mode I)",
            lambda: b"P5\n16 16\n65535\n" + GREY16.astype(">u2").tobytes(),
            lambda: _grey_rgb(GREY16 // 256),
        ),
        ("48-bit RGB PNG", lambda: _png16_rgb(RGB16), lambda: (RGB16 // 256).astype(np.uint8)),
        ("48-bit RGB TIFF", lambda: _tiff16_rgb(RGB16), lambda: (RGB16 // 256).astype(np.uint8)),
        (
            "32-bit float TIFF",
            lambda: _tiff(Image.fromarray(FLOAT)),
            lambda: _grey_rgb(np.rint(np.clip(FLOAT.astype(np.float64), 0, 1) * 255)),
        ),
    ],
)
def test_high_bit_depth_images_are_scaled_to_8_bits_by_their_range(name, data, expected):
    img, reason = decode_image(data())
    assert reason is None, (name, reason)
    assert img.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(img), expected(), err_msg=name)


def test_pillow_alone_would_clip_16_bit_grey_to_white():
    """Why the conversion is ours: Pillow's convert clips instead of scaling (the bug the test above guards)."""
    clipped = np.asarray(Image.fromarray(GREY16).convert("RGB"))
    assert (clipped == 255).mean() > 0.9  # nearly every pixel white
    img, _ = decode_image(_png(Image.fromarray(GREY16)))
    assert (np.asarray(img) == 255).mean() < 0.01


def test_32_bit_integer_beyond_16_bits_is_scaled_by_the_signed_range():
    values = np.array([[-(2**31), -1, 0, 2**31 - 1]] * 8, dtype=np.int32).repeat(2, axis=1)
    img, reason = decode_image(_tiff(Image.fromarray(values)))
    assert reason is None
    row = np.asarray(img)[0, ::2, 0]
    np.testing.assert_array_equal(row, (values[0, ::2].astype(np.int64) + 2**31) // 2**24)


def test_cielab_tiff_is_converted_to_srgb_by_littlecms():
    # CIELAB of sRGB red is about (53.2, 80.1, 67.2); Pillow stores L * 255 / 100, a + 128, b + 128
    lab = Image.new("LAB", (16, 16), (round(53.24 * 255 / 100), 128 + 80, 128 + 67))
    img, reason = decode_image(_tiff(lab))
    assert reason is None
    r, g, b = img.getpixel((3, 3))
    assert r > 230 and g < 30 and b < 30

import io

from PIL import Image

from realrag_core.image_io import DecodeLimits, decode_image


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
        _png(Image.new("I;16", (32, 32))): "unsupported mode",
        _png(Image.new("RGB", (4, 4))): "too small",
    }
    for data, expected in cases.items():
        img, reason = decode_image(data)
        assert img is None and expected in reason, (expected, reason)


def test_absurd_dimensions_are_rejected_before_decoding():
    data = _png(Image.new("L", (600, 600)))
    img, reason = decode_image(data, DecodeLimits(max_pixels=100_000, min_side=8))
    assert img is None and "absurd dimensions 600x600" in reason

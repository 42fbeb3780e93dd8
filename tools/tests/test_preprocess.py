from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from vqa_ref.preprocess import ImageError, load_image_rgb, pad_regions, preprocess

INPUT = {"height": 8, "width": 16, "channel_order": "RGB", "resize": "stretch",
         "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def reference_preprocess(rgb: np.ndarray, inp: dict) -> np.ndarray:
    """docs/model-format.md §4.1 steps 2-4, written out in numpy fp32."""
    f32 = np.float32
    x = rgb.astype(f32) / f32(255)
    in_h, in_w = x.shape[:2]
    out_h, out_w = inp["height"], inp["width"]
    if (in_h, in_w) != (out_h, out_w):
        def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            scale = np.float64(f32(n_in) / f32(n_out))  # fp32 scale, then source index and weight in double
            src = np.maximum((np.arange(n_out) + 0.5) * scale - 0.5, 0.0)
            i0 = np.floor(src).astype(np.int64)
            i1 = np.minimum(i0 + 1, n_in - 1)
            return i0, i1, (src - i0).astype(f32)
        y0, y1, ly = axis(in_h, out_h)
        x0, x1, lx = axis(in_w, out_w)
        ly, lx = ly[:, None, None], lx[None, :, None]
        top = (f32(1) - lx) * x[y0][:, x0] + lx * x[y0][:, x1]
        bottom = (f32(1) - lx) * x[y1][:, x0] + lx * x[y1][:, x1]
        x = (f32(1) - ly) * top + ly * bottom
    if inp["channel_order"] == "BGR":
        x = x[:, :, ::-1]
    x = (x - np.array(inp["mean"], f32)) / np.array(inp["std"], f32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


@pytest.mark.parametrize("size", [(13, 11), (5, 40), (8, 16), (1, 1), (29, 37), (480, 640)])
@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_preprocess_matches_formula(size: tuple[int, int], order: str) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (*size, 3), dtype=np.uint8)
    inp = dict(INPUT, channel_order=order)
    got = preprocess(rgb, inp)
    assert got.dtype == torch.float32 and tuple(got.shape) == (3, 8, 16)
    # PyTorch's kernel may round the last step differently (FMA): allow about one ulp of [0, 1] / std
    np.testing.assert_allclose(got.numpy(), reference_preprocess(rgb, inp), rtol=0, atol=1e-6)
    if size == (8, 16):  # no resize: exact
        np.testing.assert_array_equal(got.numpy(), reference_preprocess(rgb, inp))


def test_preprocess_accepts_full_config() -> None:
    from conftest import tiny_config
    rgb = np.zeros((3, 3, 3), np.uint8)
    assert tuple(preprocess(rgb, tiny_config()).shape) == (3, 8, 8)
    with pytest.raises(ImageError):
        preprocess(np.zeros((3, 3), np.uint8), INPUT)


def _png(img: Image.Image, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kwargs)
    return buf.getvalue()


def _raw_png(width: int, height: int, color_type: int, bit_depth: int, rows: list[bytes]) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    data = zlib.compress(b"".join(b"\x00" + row for row in rows))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


RNG = np.random.default_rng(2)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
GREY = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
ALPHA = RNG.integers(0, 256, (5, 7), dtype=np.uint8)


def test_rgb_and_grey() -> None:
    np.testing.assert_array_equal(load_image_rgb(_png(Image.fromarray(RGB))), RGB)
    out = load_image_rgb(_png(Image.fromarray(GREY)))
    np.testing.assert_array_equal(out, np.repeat(GREY[:, :, None], 3, axis=2))
    assert out.dtype == np.uint8 and out.flags.writeable


def test_alpha_dropped_without_compositing() -> None:
    rgba = np.dstack([RGB, ALPHA])
    np.testing.assert_array_equal(load_image_rgb(_png(Image.fromarray(rgba))), RGB)
    la = Image.fromarray(np.dstack([GREY, ALPHA]), mode="LA")
    np.testing.assert_array_equal(load_image_rgb(_png(la)), np.repeat(GREY[:, :, None], 3, axis=2))


def test_palette_expanded_even_with_transparency() -> None:
    palette = RNG.integers(0, 256, (16, 3), dtype=np.uint8)
    index = RNG.integers(0, 16, (5, 7), dtype=np.uint8)
    img = Image.fromarray(index, mode="P")
    img.putpalette(palette.flatten().tolist())
    np.testing.assert_array_equal(load_image_rgb(_png(img)), palette[index])
    np.testing.assert_array_equal(load_image_rgb(_png(img, transparency=3)), palette[index])


def test_sixteen_bit_keeps_high_byte() -> None:
    grey16 = RNG.integers(0, 65536, (5, 7)).astype(np.uint16)
    out = load_image_rgb(_raw_png(7, 5, 0, 16, [row.astype(">u2").tobytes() for row in grey16]))
    np.testing.assert_array_equal(out, np.repeat((grey16 >> 8).astype(np.uint8)[:, :, None], 3, axis=2))
    rgb16 = RNG.integers(0, 65536, (5, 7, 3)).astype(np.uint16)
    out = load_image_rgb(_raw_png(7, 5, 2, 16, [row.astype(">u2").tobytes() for row in rgb16]))
    np.testing.assert_array_equal(out, (rgb16 >> 8).astype(np.uint8))
    rgba16 = RNG.integers(0, 65536, (5, 7, 4)).astype(np.uint16)
    out = load_image_rgb(_raw_png(7, 5, 6, 16, [row.astype(">u2").tobytes() for row in rgba16]))
    np.testing.assert_array_equal(out, (rgba16[:, :, :3] >> 8).astype(np.uint8))


def test_one_bit_grey_is_0_or_255() -> None:
    out = load_image_rgb(_raw_png(4, 1, 0, 1, [bytes([0b10100000])]))
    np.testing.assert_array_equal(out[0, :, 0], [255, 0, 255, 0])


def test_bad_images(tmp_path) -> None:
    good = _png(Image.fromarray(RGB))
    with pytest.raises(ImageError):
        load_image_rgb(good[: len(good) // 2])
    with pytest.raises(ImageError):
        load_image_rgb(b"not an image at all")
    path = tmp_path / "x.png"
    path.write_bytes(good)
    np.testing.assert_array_equal(load_image_rgb(path), RGB)
    np.testing.assert_array_equal(load_image_rgb(str(path)), RGB)


def test_pad_regions() -> None:
    feats = np.arange(1, 13, dtype=np.float32).reshape(4, 3)
    feats[1] = 0
    boxes = np.array([[0, 0, 10, 20], [5, 5, 6, 6], [10, 20, 40, 40], [0, 0, 40, 40]], np.float32)
    out = pad_regions(feats, 6, boxes, width=40, height=40)
    assert tuple(out.features.shape) == (6, 3) and not out.truncated
    assert out.mask.tolist() == [False, True, False, False, True, True]
    np.testing.assert_allclose(out.boxes5[0].numpy(), [0, 0, 0.25, 0.5, 0.125])
    np.testing.assert_allclose(out.boxes5[2].numpy(), [0.25, 0.5, 1.0, 1.0, 0.375])
    assert out.boxes5[4:].abs().sum() == 0
    short = pad_regions(feats, 2)
    assert short.truncated and short.boxes5 is None and tuple(short.features.shape) == (2, 3)
    empty = pad_regions(np.zeros((0, 3), np.float32), 3, np.zeros((0, 4)), 10, 10)
    assert empty.mask.all()
    with pytest.raises(ValueError):
        pad_regions(feats, 6, boxes)  # boxes without the image size

"""Image decoding and preprocessing (docs/model-format.md §4.1) and region-feature padding (§4.4)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_CONVERTIBLE_MODES = ("1", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBa", "La")


class ImageError(ValueError):
    """An image file cannot be decoded to 8-bit RGB."""


def load_image_rgb(source: str | Path | bytes | BinaryIO) -> np.ndarray:
    """§4.1 step 1: decode to uint8 [H, W, 3] RGB.

    Grey is replicated, alpha dropped without compositing, 16-bit samples keep their high byte, palettes
    expanded. Only the first frame of an animation is read; EXIF orientation is not applied.
    """
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        with Image.open(source) as img:
            img.load()
            return _to_rgb(img)
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's errors for unreadable / truncated files
        if isinstance(e, ImageError):
            raise
        raise ImageError(f"cannot decode image: {e}") from e


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(img).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 0xFFFF):
            raise ImageError(f"image mode {mode}: samples outside 16 bits")
        grey = (values >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in _CONVERTIBLE_MODES:
        img = img.convert("RGBA" if mode in ("PA", "RGBa", "La") else "RGB")
        mode = img.mode
    arr = np.asarray(img)
    if mode in ("L", "LA"):
        grey = arr if arr.ndim == 2 else arr[:, :, 0]
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("RGB", "RGBA", "RGBX"):
        return np.array(arr[:, :, :3], copy=True)
    raise ImageError(f"unsupported image mode {mode!r}")


def _input_block(cfg: dict) -> dict:
    """Accept a whole config or its image.input block."""
    return cfg["image"]["input"] if "image" in cfg else cfg


def preprocess(rgb: np.ndarray, cfg: dict) -> torch.Tensor:
    """§4.1 steps 2-4: uint8 [H, W, 3] RGB -> float32 [3, height, width], normalised, in channel_order."""
    inp = _input_block(cfg)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(f"preprocess: expected uint8 [H, W, 3], got {rgb.dtype} {list(rgb.shape)}")
    x = torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1).contiguous().float() / 255.0
    out_h, out_w = inp["height"], inp["width"]
    if tuple(x.shape[1:]) != (out_h, out_w):
        x = F.interpolate(x[None], size=(out_h, out_w), mode="bilinear", align_corners=False,
                          antialias=False)[0]
    if inp["channel_order"] == "BGR":
        x = x.flip(0)
    mean = torch.tensor(inp["mean"], dtype=torch.float32)[:, None, None]
    std = torch.tensor(inp["std"], dtype=torch.float32)[:, None, None]
    return ((x - mean) / std).contiguous()


def load_and_preprocess(source: str | Path | bytes | BinaryIO, cfg: dict) -> torch.Tensor:
    return preprocess(load_image_rgb(source), cfg)


@dataclass
class RegionInputs:
    features: torch.Tensor  # [N, F] float32, zero rows = padding
    boxes5: torch.Tensor | None  # [N, 5] float32: x1/W, y1/H, x2/W, y2/H, area/(W*H); None without boxes
    mask: torch.Tensor  # [N] bool, True = masked (feature row all exactly zero)
    truncated: bool  # more than N regions were given; the rest was dropped


def box5(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """[N, 4] pixel boxes (x1, y1, x2, y2) -> [N, 5] float32 box features of §4.4."""
    if width <= 0 or height <= 0:
        raise ValueError(f"box features need image width and height > 0, got {width}x{height}")
    b = np.asarray(boxes, dtype=np.float32)
    w, h = np.float32(width), np.float32(height)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) / (w * h)
    return np.stack([b[:, 0] / w, b[:, 1] / h, b[:, 2] / w, b[:, 3] / h, area], axis=1).astype(np.float32)


def pad_regions(features: np.ndarray, max_regions: int, boxes: np.ndarray | None = None,
                width: float | None = None, height: float | None = None) -> RegionInputs:
    """§4.4: keep the first max_regions rows, pad with zero rows (zero boxes); mask all-zero rows."""
    feats = np.asarray(features, dtype=np.float32)
    if feats.ndim != 2:
        raise ValueError(f"region features: expected [N', F], got shape {list(feats.shape)}")
    kept = min(feats.shape[0], max_regions)
    out = np.zeros((max_regions, feats.shape[1]), dtype=np.float32)
    out[:kept] = feats[:kept]
    b5 = None
    if boxes is not None:
        boxes = np.asarray(boxes, dtype=np.float32)
        if boxes.shape != (feats.shape[0], 4):
            raise ValueError(f"boxes: expected [{feats.shape[0]}, 4], got {list(boxes.shape)}")
        if width is None or height is None:
            raise ValueError("boxes given without the image width and height")
        b5 = np.zeros((max_regions, 5), dtype=np.float32)
        b5[:kept] = box5(boxes[:kept], width, height)
    features_t = torch.from_numpy(out)
    return RegionInputs(features=features_t, boxes5=None if b5 is None else torch.from_numpy(b5),
                        mask=(features_t == 0).all(dim=1), truncated=feats.shape[0] > max_regions)

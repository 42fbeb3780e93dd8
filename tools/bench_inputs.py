"""The synthetic inputs of vqa_bench (tools/bench_synthetic.cpp), reproduced bit for bit in Python.

Every value comes from splitmix64 over a counter: value i of stream `index` of a family is
splitmix64(splitmix64(splitmix64(seed ^ tag) + index) + i) (mod 2^64). Image m (pixels, or region features and
boxes) and question q are the same whatever the batch size; a call of batch B asks question q about image
q // questions_per_image. With `vqa_bench --regions MIN,MAX`, region image m holds a count of regions drawn in
MIN..MAX (the engine and bench_torch pad them to max_regions with zero rows). docs/benchmarks.md describes the
format of `vqa_bench --dump-inputs`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MASK64 = (1 << 64) - 1
IMAGE_TAG = 0x696D616765730000  # "images\0\0"
QUESTION_TAG = 0x7175657374696F6E  # "question"
REGION_IMAGE_WIDTH = 640  # region boxes lie inside an image of this size (pixels)
REGION_IMAGE_HEIGHT = 480
INPUTS_FORMAT = "vqa_bench-inputs/1"

_C1, _C2, _C3 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def splitmix64(x: int) -> int:
    z = (x + _C1) & MASK64
    z = ((z ^ (z >> 30)) * _C2) & MASK64
    z = ((z ^ (z >> 27)) * _C3) & MASK64
    return z ^ (z >> 31)


def splitmix64_array(x: np.ndarray) -> np.ndarray:
    """splitmix64 of every element of a uint64 array (numpy wraps uint64 arithmetic mod 2^64)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(_C1)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_C2)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_C3)
        return z ^ (z >> np.uint64(31))


def stream_key(seed: int, tag: int, index: int) -> int:
    return splitmix64((splitmix64((seed ^ tag) & MASK64) + index) & MASK64)


def stream(key: int, start: int, count: int) -> np.ndarray:
    """Values start .. start+count-1 of the stream with this key."""
    counter = np.arange(count, dtype=np.uint64) + np.uint64(start)
    with np.errstate(over="ignore"):
        return splitmix64_array(counter + np.uint64(key))


@dataclass
class ImageSpec:
    """What the generator needs to know of the model's image input (the "image" block of a dump)."""

    kind: str  # "pixels" or "regions"
    height: int = 0  # pixels: the model's input size
    width: int = 0
    num_regions: int = 0  # regions: max_regions x feature_dim, boxes when the model uses box features
    feature_dim: int = 0
    boxes: bool = False
    region_counts: tuple[int, int] | None = None  # regions: (MIN, MAX) of vqa_bench --regions; None: all max_regions

    @staticmethod
    def from_config(cfg: dict, region_counts: tuple[int, int] | None = None) -> "ImageSpec":
        image = cfg["image"]
        if image["encoder"] == "regions":
            r = image["regions"]
            return ImageSpec("regions", num_regions=r["max_regions"], feature_dim=r["feature_dim"],
                             boxes=bool(r["box_features"]), region_counts=region_counts)
        return ImageSpec("pixels", height=image["input"]["height"], width=image["input"]["width"])

    @staticmethod
    def from_json(block: dict) -> "ImageSpec":
        if block["kind"] == "regions":
            counts = block.get("region_counts")  # absent in dumps from before --regions: every image is full
            return ImageSpec("regions", num_regions=block["num_regions"], feature_dim=block["feature_dim"],
                             boxes=bool(block["boxes"]), region_counts=None if counts is None else tuple(counts))
        return ImageSpec("pixels", height=block["height"], width=block["width"])


@dataclass
class SyntheticImage:
    pixels: np.ndarray | None = None  # uint8 [H, W, 3] RGB
    features: np.ndarray | None = None  # float32 [N, F] in [0, 1)
    boxes: np.ndarray | None = None  # float32 [N, 4] x1, y1, x2, y2 in pixels of a 640x480 image


def region_count(spec: ImageSpec, key: int) -> int:
    """The image's count of regions: value max_regions * (feature_dim + 4) of its stream, the first past those of
    a full image (its features, then 4 box values per region), so that region r is the same whatever the count."""
    if spec.region_counts is None:
        return spec.num_regions
    low, high = spec.region_counts
    return low + splitmix64((key + spec.num_regions * (spec.feature_dim + 4)) & MASK64) % (high - low + 1)


def make_image(spec: ImageSpec, seed: int, index: int) -> SyntheticImage:
    key = stream_key(seed, IMAGE_TAG, index)
    if spec.kind == "pixels":
        n = spec.height * spec.width * 3
        return SyntheticImage(pixels=(stream(key, 0, n) >> np.uint64(56)).astype(np.uint8)
                              .reshape(spec.height, spec.width, 3))
    count = region_count(spec, key)
    features = ((stream(key, 0, count * spec.feature_dim) >> np.uint64(40)).astype(np.float32)
                * np.float32(2.0 ** -24))
    image = SyntheticImage(features=features.reshape(count, spec.feature_dim))
    if spec.boxes:
        # The boxes of a full image follow its max_regions rows of features; the first `count` of them are used.
        raw = stream(key, spec.num_regions * spec.feature_dim, 4 * count).reshape(count, 4)
        x1 = raw[:, 0] % np.uint64(REGION_IMAGE_WIDTH // 2)
        y1 = raw[:, 1] % np.uint64(REGION_IMAGE_HEIGHT // 2)
        w = np.uint64(32) + raw[:, 2] % np.uint64(REGION_IMAGE_WIDTH // 2 - 32)
        h = np.uint64(24) + raw[:, 3] % np.uint64(REGION_IMAGE_HEIGHT // 2 - 24)
        image.boxes = np.stack([x1, y1, x1 + w, y1 + h], axis=1).astype(np.float32)
    return image


def vocab_words(vocab: dict[str, int], cfg: dict) -> list[str]:
    """The vocab's tokens other than pad and unk, by id (the words questions are made of)."""
    tok = cfg["text"]["tokenizer"]
    skip = {tok["pad_id"], tok["unk_id"]}
    return [t for t, i in sorted(vocab.items(), key=lambda kv: kv[1]) if i not in skip and t and " " not in t]


def make_question(words: list[str], max_length: int, seed: int, index: int) -> str:
    key = stream_key(seed, QUESTION_TAG, index)
    count = 1 + splitmix64(key) % max_length
    return " ".join(words[splitmix64((key + 1 + i) & MASK64) % len(words)] for i in range(count))


@dataclass
class BatchInputs:
    batch: int
    questions: list[str]
    image_index: list[int]
    images: list[SyntheticImage]


def make_batch(spec: ImageSpec, words: list[str], max_length: int, seed: int, batch: int,
               questions_per_image: int) -> BatchInputs:
    num_images = (batch + questions_per_image - 1) // questions_per_image
    return BatchInputs(batch=batch,
                       questions=[make_question(words, max_length, seed, q) for q in range(batch)],
                       image_index=[q // questions_per_image for q in range(batch)],
                       images=[make_image(spec, seed, m) for m in range(num_images)])


def read_dump(path: str | Path) -> dict[str, Any]:
    """A `vqa_bench --dump-inputs` file, checked for its format."""
    dump = json.loads(Path(path).read_text(encoding="utf-8"))
    if dump.get("format") != INPUTS_FORMAT or dump.get("generator") != "splitmix64":
        raise ValueError(f"{path}: expected a {INPUTS_FORMAT} file (vqa_bench --dump-inputs), "
                         f"got format {dump.get('format')!r}")
    return dump


def batches_from_dump(dump: dict[str, Any], batches: list[int] | None = None) -> list[BatchInputs]:
    """The dumped questions and image indices; the images regenerated from the dumped seed."""
    spec = ImageSpec.from_json(dump["image"])
    out = []
    for entry in dump["batches"]:
        if batches is not None and entry["batch"] not in batches:
            continue
        images = [make_image(spec, dump["seed"], m) for m in range(entry["images"])]
        dumped_counts = entry.get("num_regions")  # the counts vqa_bench drew: the two generators must agree
        if dumped_counts is not None and dumped_counts != [im.features.shape[0] for im in images]:
            raise ValueError(f"batch {entry['batch']}: region counts {[im.features.shape[0] for im in images]} "
                             f"regenerated, {dumped_counts} dumped")
        out.append(BatchInputs(entry["batch"], list(entry["questions"]), list(entry["image_index"]), images))
    if batches is not None:
        missing = sorted(set(batches) - {b.batch for b in out})
        if missing:
            raise ValueError(f"batch sizes {missing} are not in the dump (it has "
                             f"{[e['batch'] for e in dump['batches']]})")
    return out

"""Write golden model directories, inputs and reference activations for the C++ parity tests.

  python tools/make_goldens.py --out tests/goldens --seed 0 [--variants NAME ...]

Each variant is a tiny model of one architecture with seeded random weights. The output is byte-identical
for the same seed on the same machine. tests/goldens/README.md (written here) describes the files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from export import save_model_dir  # noqa: E402
from vqa_ref.config import make_config  # noqa: E402
from vqa_ref.model import VQAModel, spec_state_dict  # noqa: E402
from vqa_ref.preprocess import load_image_rgb, pad_regions, preprocess  # noqa: E402
from vqa_ref.safetensors_io import write_safetensors  # noqa: E402
from vqa_ref.tokenizer import Tokenizer, build_vocab  # noqa: E402

QUESTIONS = [
    "What color is the shape?",
    "Is there a RED-circle/square in the Zebra's picture?!",
    "how many shapes are there in this picture and what is the color of the biggest one on the left",
    "Does the image contain a triangle",
]
IMAGE_INDEX = [0, 0, 1, 2]  # questions 0 and 1 share image 0
TRAINING_QUESTIONS = [
    "what color is the shape", "is there a red circle", "is there a blue square", "how many shapes are there",
    "does the image contain a green triangle", "what is the shape in the image", "is it a circle or a square",
    "is there no yellow shape", "what color is the triangle",
]
CLASS_ANSWERS = ["yes", "no", "red", "blue", "green", "circle", "square"]
WORD_ANSWERS = ["<bos>", "<eos>", "yes", "no", "red", "blue", "green", "circle", "square"]
PNG_SIZE = (37, 29)  # width, height: odd, different from every input size, so the resize runs

TEXT = {"tokenizer": {"max_length": 10}}
VARIANTS: dict[str, tuple[tuple[str, str, str, str], dict[str, Any]]] = {
    # name: ((image encoder, text encoder, fusion, head), config overrides by key path)
    "cnn_lstm_mcan_softmax": (("cnn", "lstm", "mcan", "classifier"), {
        "image": {"input": {"height": 12, "width": 16}, "cnn": {"channels": [8, 16], "bn_eps": 1e-3}},
        "text": {"embed_dim": 12, **TEXT}, "fusion": {"hidden": 16, "heads": 2, "ff": 24, "layers": 2},
        "pool": {"mlp_hidden": 12, "glimpses": 1, "out_dim": 24}}),
    "cnn_transformer_simple_sigmoid": (("cnn", "transformer", "simple", "classifier"), {
        "image": {"input": {"height": 16, "width": 16, "channel_order": "BGR", "mean": [0.4, 0.5, 0.6],
                            "std": [0.2, 0.25, 0.3]},
                  "cnn": {"channels": [8, 8, 16], "batch_norm": False}},
        "text": {"layers": 1, **TEXT}, "fusion": {"hidden": 16, "heads": 1, "ff": 32, "layers": 2},
        "pool": {"mlp_hidden": 16, "glimpses": 1, "out_dim": 16}, "head.activation": "sigmoid"}),
    "resnet18_lstm_mcan": (("resnet", "lstm", "mcan", "classifier"), {
        "image": {"input": {"height": 64, "width": 48}, "resnet": {"depth": 18, "base_width": 4}},
        "text": {"embed_dim": 16, **TEXT}, "fusion": {"hidden": 32, "heads": 4, "ff": 48, "layers": 1},
        "pool": {"mlp_hidden": 16, "glimpses": 1, "out_dim": 32}}),
    "resnet50_transformer_simple": (("resnet", "transformer", "simple", "classifier"), {
        "image": {"input": {"height": 32, "width": 32}, "resnet": {"depth": 50, "base_width": 4}},
        "text": {"layers": 2, **TEXT}, "fusion": {"hidden": 16, "heads": 2, "ff": 32, "layers": 1},
        "pool": {"mlp_hidden": 16, "glimpses": 2, "out_dim": 24}}),
    "regions_box_lstm_mcan_openvqa": (("regions", "lstm", "mcan", "classifier"), {
        "image": {"regions": {"feature_dim": 12, "max_regions": 6, "box_features": True, "box_dim": 4}},
        "text": {"embed_dim": 12, **TEXT},
        "fusion": {"hidden": 24, "heads": 4, "ff": 32, "layers": 2, "masked_row": "uniform"},
        "layer_norm": {"variant": "unbiased_std", "eps": 1e-6},
        "pool": {"mlp_hidden": 16, "glimpses": 2, "out_dim": 32}, "head.activation": "sigmoid"}),
    "regions_lstm_simple_generate_gru": (("regions", "lstm", "simple", "generate"), {
        "image": {"regions": {"feature_dim": 10, "max_regions": 5, "box_features": False, "box_dim": 4}},
        "text": {"embed_dim": 12, **TEXT}, "fusion": {"hidden": 16, "heads": 2, "ff": 24, "layers": 1},
        "pool": {"mlp_hidden": 16, "glimpses": 1, "out_dim": 16},
        "head": {"cell": "gru", "embed_dim": 8, "hidden": 16, "max_length": 4}}),
    "cnn_lstm_mcan_generate_lstm": (("cnn", "lstm", "mcan", "generate"), {
        "image": {"input": {"height": 16, "width": 16}, "cnn": {"channels": [8, 16]}},
        "text": {"embed_dim": 12, **TEXT}, "fusion": {"hidden": 16, "heads": 4, "ff": 24, "layers": 1},
        "pool": {"mlp_hidden": 16, "glimpses": 1, "out_dim": 16},
        "head": {"cell": "lstm", "embed_dim": 8, "hidden": 12, "max_length": 5}}),
}


def variant_config(name: str) -> dict:
    (image, text, fusion, head), overrides = VARIANTS[name]
    cfg = make_config(image, text, fusion, head, overrides=overrides)
    cfg["name"] = f"golden-{name}"
    return cfg


def randomize(model: VQAModel, rng: np.random.Generator) -> None:
    """Seeded non-trivial weights: N(0, 1/fan_in) matrices, small biases, LN/BN near identity, BN var > 0."""
    def normal(shape: tuple[int, ...], std: float, mean: float = 0.0) -> torch.Tensor:
        return torch.from_numpy((mean + std * rng.standard_normal(shape)).astype(np.float32))

    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            shape = tuple(tensor.shape)
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "num_batches_tracked":
                continue
            if leaf == "running_var":
                value = torch.from_numpy(rng.uniform(0.5, 1.5, shape).astype(np.float32))
            elif leaf == "running_mean" or "bias" in leaf:
                value = normal(shape, 0.1)
            elif tensor.dim() == 1:  # LayerNorm / BatchNorm scale
                value = normal(shape, 0.1, mean=1.0)
            elif "embedding" in name or "position" in name:
                value = normal(shape, 0.5)
            else:
                value = normal(shape, float(np.prod(shape[1:])) ** -0.5)
            tensor.copy_(value)


def grid_images(cfg: dict, rng: np.random.Generator, out: Path) -> torch.Tensor:
    """Three images: image0.png (decoded + preprocessed), then two random ones (one at another odd size)."""
    height, width = cfg["image"]["input"]["height"], cfg["image"]["input"]["width"]
    yy, xx = np.mgrid[0:PNG_SIZE[1], 0:PNG_SIZE[0]]
    base = np.stack([xx * 7, yy * 9, (xx + yy) * 4], axis=2).astype(np.float64)
    pixels = np.clip(base + rng.integers(0, 60, base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels, mode="RGB").save(out / "image0.png", format="PNG")
    decoded = load_image_rgb(out / "image0.png")
    assert np.array_equal(decoded, pixels)
    others = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
              rng.integers(0, 256, (height + 3, width * 2 + 1, 3), dtype=np.uint8)]
    return torch.stack([preprocess(decoded, cfg)] + [preprocess(p, cfg) for p in others])


def region_inputs(cfg: dict, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Image 0: a zero (masked) region in the middle; image 1: more regions than max_regions (truncated);
    image 2: no regions at all, so every image token is masked (pins fusion.masked_row)."""
    reg = cfg["image"]["regions"]
    n, feat = reg["max_regions"], reg["feature_dim"]
    width, height = 640.0, 480.0
    counts = [n - 1, n + 2, 0]
    feats, boxes5 = [], []
    for i, count in enumerate(counts):
        f = np.abs(rng.standard_normal((count, feat))).astype(np.float32)
        if i == 0:
            f[count // 2] = 0.0
        x1 = rng.uniform(0, width / 2, count)
        y1 = rng.uniform(0, height / 2, count)
        boxes = np.stack([x1, y1, x1 + rng.uniform(10, width / 2, count), y1 + rng.uniform(10, height / 2, count)], 1)
        padded = pad_regions(f, n, boxes if reg["box_features"] else None, width, height)
        feats.append(padded.features)
        if padded.boxes5 is not None:
            boxes5.append(padded.boxes5)
    out = {"regions": torch.stack(feats)}
    if boxes5:
        out["boxes5"] = torch.stack(boxes5)
    return out


def tune_eos_bias(model: VQAModel, inputs: dict[str, torch.Tensor]) -> None:
    """Shift head.out.bias[eos] so that some samples stop early and some never stop: both paths pinned."""
    head = model.head
    base = head.out.bias[head.eos_id].item()
    for shift in np.linspace(0.0, 4.0, 41):
        with torch.no_grad():
            head.out.bias[head.eos_id] = base + float(shift)
            tokens, _ = model(**inputs)
        stopped = (tokens == head.eos_id).any(dim=1)
        early = bool(((tokens == head.eos_id).int().argmax(dim=1) < head.max_length - 1)[stopped].any())
        if early and not bool(stopped.all()):
            return
    raise RuntimeError("no eos bias gives both stopping and non-stopping samples; change the seed")


def _to_file_dtype(value: torch.Tensor) -> torch.Tensor:
    if value.dtype == torch.bool:
        return value.float()  # masks: 1.0 = masked
    return value.detach().contiguous() if value.dtype == torch.long else value.detach().float().contiguous()


def write_variant(name: str, index: int, seed: int, root: Path) -> None:
    out = root / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rng = np.random.default_rng([seed, index])
    cfg = variant_config(name)
    tok_cfg = cfg["text"]["tokenizer"]
    vocab = build_vocab(TRAINING_QUESTIONS, tok_cfg)
    answers = WORD_ANSWERS if cfg["head"]["type"] == "generate" else CLASS_ANSWERS
    model = VQAModel(cfg, len(vocab), len(answers))
    randomize(model, rng)
    tokenizer = Tokenizer(tok_cfg, vocab)
    encoded = [tokenizer.encode(q) for q in QUESTIONS]
    inputs: dict[str, torch.Tensor] = {
        "ids": torch.tensor([ids for ids, _ in encoded], dtype=torch.long),
        "lengths": torch.tensor([n for _, n in encoded], dtype=torch.long),
        "image_index": torch.tensor(IMAGE_INDEX, dtype=torch.long),
    }
    if cfg["image"]["encoder"] == "regions":
        inputs.update(region_inputs(cfg, rng))
    else:
        inputs["images"] = grid_images(cfg, rng, out)
    if cfg["head"]["type"] == "generate":
        tune_eos_bias(model, inputs)
    with torch.no_grad():
        acts = model(**inputs, return_activations=True)
    save_model_dir(model, cfg, vocab, answers, out)
    write_safetensors(out / "inputs.safetensors", inputs)
    write_safetensors(out / "activations.safetensors", {k: _to_file_dtype(v) for k, v in acts.items()})
    (out / "questions.json").write_text(json.dumps(QUESTIONS, indent=2) + "\n", encoding="utf-8")
    assert set(spec_state_dict(model)) == set(spec_state_dict(VQAModel(cfg, len(vocab), len(answers))))


README = """# Golden outputs of the PyTorch reference model

Written by `tools/make_goldens.py --out tests/goldens --seed 0`; do not edit by hand. One directory per
variant, each a complete model directory (docs/model-format.md) with tiny seeded random weights, plus:

- `questions.json`: the {b} questions. Tokenized with the directory's vocab they give `ids`/`lengths`.
- `inputs.safetensors`: `ids` [B, L] I64, `lengths` [B] I64, `image_index` [B] I64 (question -> image row;
  questions 0 and 1 share image 0), and either `images` [Bi, 3, h, w] F32 (preprocessed; `images[0]` is
  `image0.png` decoded and preprocessed per §4.1), or `regions` [Bi, N, F] F32 (+ `boxes5` [Bi, N, 5] with
  box features). Region image 0 has an all-zero region in the middle, image 1 was truncated from N+2
  regions, image 2 has no region (every image token masked).
- `activations.safetensors`: F32 unless noted. Per distinct image: `image_trunk` [Bi, Ni, C_img] (trunk
  output, or regions ++ box branch), `image_tokens` [Bi, Ni, d] (after the adapter), `image_mask` [Bi, Ni].
  Per question: `text_embedded` [B, L, E] (embedding rows, before any position embedding), `text_mask`
  [B, L], `text_tokens` [B, L, d] (text encoder output), `fusion.text.{{i}}` [B, L, d] and, for mcan,
  `fusion.image.{{i}}` [B, Ni, d] (output of fusion layer i), `pooled_text`, `pooled_image`, `fused`
  [B, out_dim] (`fused` after head.norm); classifier: `logits` [B, A]; generate: `generated` [B, T] I64
  (greedy tokens, eos included, -1 after eos), `scores` [B], `step_logits` [B, T, A] (decoder logits of
  each step, 0 after eos). Masks are 1.0 where masked, 0.0 where valid.
- `image0.png` ({w}x{h}, grid encoders only).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder (e.g. tests/goldens)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and inputs (default 0)")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), help="only these variants")
    args = parser.parse_args(argv)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "README.md").write_text(README.format(b=len(QUESTIONS), w=PNG_SIZE[0], h=PNG_SIZE[1]),
                                            encoding="utf-8")
        for index, name in enumerate(VARIANTS):
            if args.variants is None or name in args.variants:
                write_variant(name, index, args.seed, args.out)
                print(f"wrote {args.out / name}")
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    return 0


if __name__ == "__main__":
    sys.exit(main())

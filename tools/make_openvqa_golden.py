"""Write the converted-openvqa fixture for the C++ parity test (tests/goldens-openvqa).

  python tools/make_openvqa_golden.py --out tests/goldens-openvqa/mcan_tiny [--seed 0]

A tiny openvqa-layout MCAN (tools/openvqa_ref.py) with seeded weights is saved as an openvqa checkpoint,
converted with tools/convert_openvqa.py, and run by openvqa's forward on the fixture's images and questions:
- the model directory (config.json, model.safetensors, vocab.json, answers.json);
- `questions.json`: [{"image": i, "question": text}, ...];
- `image{i}.npz`: openvqa's region-feature layout (`x` [F, N], `bbox` [N, 4] pixels, `image_w`, `image_h`,
  `num_bbox`), and `image{i}.safetensors` (`features` [N, F], `boxes` [N, 4], `image_size` [2] = w, h);
- `expected.safetensors`: `logits` [Q, A] F32 of the openvqa-layout network.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

from convert_openvqa import convert, load_openvqa_state_dict  # noqa: E402
from openvqa_ref import (OpenVQAMCAN, OpenVQASizes, openvqa_build_vocab, openvqa_question_ids,  # noqa: E402
                         openvqa_region_inputs, randomize, save_openvqa_checkpoint)

QUESTIONS = [
    (0, "What color is the umbrella?"),
    (0, "Is the man's shirt RED/white, or blue-green?!"),
    (1, "how many people are standing next to the old red bus on the left side of the street today"),
    (2, "Is there a zebra?"),
]
TRAINING = ["what color is the umbrella", "is there a zebra", "how many people are there",
            "is the shirt red or white", "what is on the left side of the street"]
ANSWERS = ["yes", "no", "red", "2", "blue", "umbrella"]
SIZES = dict(hidden=16, heads=4, ff=24, layers=2, embed=8, frcn_feat=6, use_bbox=True, bbox_emb=4,
             flat_mlp=8, glimpses=1, flat_out=12)
MAX_REGIONS = 8


def make_images(rng: np.random.Generator, feature_dim: int) -> list[dict[str, np.ndarray]]:
    """Three images: 5 regions with a zero row inside, 10 regions (truncated to 8), 3 regions."""
    images = []
    for count, width, height in ((5, 640.0, 480.0), (10, 500.0, 375.0), (3, 320.0, 240.0)):
        feats = rng.uniform(0.0, 2.0, (count, feature_dim)).astype(np.float32)
        if count == 5:
            feats[2] = 0.0
        x1 = rng.uniform(0, width / 2, count)
        y1 = rng.uniform(0, height / 2, count)
        boxes = np.stack([x1, y1, x1 + rng.uniform(10, width / 2, count), y1 + rng.uniform(10, height / 2, count)], 1)
        images.append({"x": feats.T.copy(), "bbox": boxes.astype(np.float32), "image_w": np.int64(width),
                       "image_h": np.int64(height), "num_bbox": np.int64(count)})
    return images


def write(out: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    vocab = openvqa_build_vocab(TRAINING)
    answer_dict = [{a: i for i, a in enumerate(ANSWERS)}, {str(i): a for i, a in enumerate(ANSWERS)}]
    net = OpenVQAMCAN(OpenVQASizes(vocab=len(vocab), answers=len(ANSWERS), **SIZES))
    randomize(net, seed)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_openvqa_checkpoint(net, Path(tmp) / "epoch13.pkl", legacy=True)
        convert(load_openvqa_state_dict(ckpt), vocab, answer_dict, out, heads=SIZES["heads"],
                max_regions=MAX_REGIONS, name="openvqa-mcan-tiny")
    images = make_images(rng, SIZES["frcn_feat"])
    feats, boxes = [], []
    for i, img in enumerate(images):
        np.savez(out / f"image{i}.npz", **img)
        save_file({"features": img["x"].T.copy(), "boxes": img["bbox"],
                   "image_size": np.array([img["image_w"], img["image_h"]], np.float32)},
                  str(out / f"image{i}.safetensors"))
        f, b = openvqa_region_inputs(img["x"], img["bbox"], float(img["image_w"]), float(img["image_h"]),
                                     MAX_REGIONS)
        feats.append(f)
        boxes.append(b)
    idx = [q[0] for q in QUESTIONS]
    ques = torch.from_numpy(np.stack([openvqa_question_ids(q, vocab) for _, q in QUESTIONS]))
    with torch.no_grad():
        logits = net(torch.from_numpy(np.stack(feats))[idx], torch.from_numpy(np.stack(boxes))[idx], ques)
    save_file({"logits": logits.numpy().astype(np.float32)}, str(out / "expected.safetensors"))
    (out / "questions.json").write_text(json.dumps([{"image": i, "question": q} for i, q in QUESTIONS], indent=2)
                                        + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    write(args.out, args.seed)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Train the bundled easy-VQA model (CNN grid encoder + multi-head MCAN fusion) and export it.

The dataset is the PyPI package `easy-vqa` (64x64 PNG shapes, 13 answers). Questions are batched by image:
each step takes a group of images and all of their questions, so every image is encoded once per step
(the same `image_index` batching the engine uses). Rerun with the same arguments to get the same model
(fixed seed, single-process data order; bit-identical only with the same PyTorch build and thread count).

    .venv/bin/python tools/train_easy_vqa.py --out models/easy-vqa
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from export import save_model_dir  # noqa: E402
from vqa_ref.config import make_config  # noqa: E402
from vqa_ref.model import VQAModel  # noqa: E402
from vqa_ref.preprocess import load_and_preprocess  # noqa: E402
from vqa_ref.tokenizer import Tokenizer, build_vocab  # noqa: E402


def bundled_config(channels: list[int] | None = None) -> dict:
    """The bundled model: 4 conv blocks (64x64 -> 4x4 grid of 64 channels), LSTM question encoder,
    MCAN encoder-decoder with 2+2 layers of 4 heads at d=64."""
    return make_config(
        image_encoder="cnn", text_encoder="lstm", fusion="mcan", head="classifier",
        name="easy-vqa-cnn-mcan",
        image__input={"height": 64, "width": 64, "channel_order": "RGB", "resize": "stretch",
                      "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        image__cnn={"channels": channels or [16, 32, 64, 64], "batch_norm": True, "bn_eps": 1e-5},
        text__embed_dim=32,
        fusion__hidden=64, fusion__heads=4, fusion__ff=128, fusion__layers=2,
        pool__mlp_hidden=64, pool__out_dim=128,
    )


class Split:
    """One easy-VQA split, preprocessed once: images [I, 3, 64, 64], ids [Q, L], lengths, labels, image rows."""

    def __init__(self, questions: tuple, image_paths: dict, cfg: dict, tokenizer: Tokenizer,
                 answer_ids: dict[str, int]) -> None:
        texts, answers, image_ids = questions
        order = sorted(image_paths)
        row_of = {image_id: row for row, image_id in enumerate(order)}
        self.images = torch.stack([load_and_preprocess(image_paths[i], cfg) for i in order])
        encoded = [tokenizer.encode(t) for t in texts]
        self.ids = torch.tensor([ids for ids, _ in encoded], dtype=torch.long)
        self.lengths = torch.tensor([n for _, n in encoded], dtype=torch.long)
        self.labels = torch.tensor([answer_ids[a] for a in answers], dtype=torch.long)
        self.image_rows = torch.tensor([row_of[i] for i in image_ids], dtype=torch.long)
        self.questions_of: list[list[int]] = [[] for _ in order]
        for q, row in enumerate(self.image_rows.tolist()):
            self.questions_of[row].append(q)

    def batches(self, images_per_batch: int, rng: random.Random | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(image rows, question indices) groups; shuffled when rng is given."""
        rows = list(range(len(self.questions_of)))
        if rng is not None:
            rng.shuffle(rows)
        out = []
        for start in range(0, len(rows), images_per_batch):
            group = rows[start:start + images_per_batch]
            qs = [q for r in group for q in self.questions_of[r]]
            out.append((torch.tensor(group, dtype=torch.long), torch.tensor(qs, dtype=torch.long)))
        return out


def run_batch(model: VQAModel, split: Split, rows: torch.Tensor, qs: torch.Tensor) -> torch.Tensor:
    local = {int(r): i for i, r in enumerate(rows.tolist())}
    image_index = torch.tensor([local[int(r)] for r in split.image_rows[qs].tolist()], dtype=torch.long)
    return model(split.ids[qs], split.lengths[qs], images=split.images[rows], image_index=image_index)


@torch.no_grad()
def accuracy(model: VQAModel, split: Split) -> float:
    model.eval()
    correct = 0
    for rows, qs in split.batches(100, None):
        correct += int((run_batch(model, split, rows, qs).argmax(1) == split.labels[qs]).sum())
    return correct / len(split.labels)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="models/easy-vqa", help="model directory to write")
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--images-per-batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cnn-channels", type=int, nargs="+", default=None,
                    help="output channels of the conv blocks (each halves the grid); default 16 32 64 64")
    ap.add_argument("--checkpoint", default="", help="also save a training checkpoint (.pt) here")
    args = ap.parse_args()

    import easy_vqa  # the dataset package, installed by scripts/setup.sh

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    np.random.seed(args.seed)

    cfg = bundled_config(args.cnn_channels)
    train_q, test_q = easy_vqa.get_train_questions(), easy_vqa.get_test_questions()
    answers = easy_vqa.get_answers()
    answer_ids = {a: i for i, a in enumerate(answers)}
    vocab = build_vocab(train_q[0], cfg["text"]["tokenizer"])
    tokenizer = Tokenizer(cfg["text"]["tokenizer"], vocab)

    t0 = time.time()
    train = Split(train_q, easy_vqa.get_train_image_paths(), cfg, tokenizer, answer_ids)
    test = Split(test_q, easy_vqa.get_test_image_paths(), cfg, tokenizer, answer_ids)
    print(f"data: {len(train.labels)} train / {len(test.labels)} test questions, {len(vocab)} tokens, "
          f"{len(answers)} answers ({time.time() - t0:.1f} s)", flush=True)

    model = VQAModel(cfg, len(vocab), len(answers))
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps = args.epochs * len(train.batches(args.images_per_batch, None))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.15)
    print(f"model: {params} parameters, {steps} steps", flush=True)

    t_train = time.time()
    test_acc = 0.0
    for epoch in range(args.epochs):
        model.train()
        total, seen = 0.0, 0
        for rows, qs in train.batches(args.images_per_batch, rng):
            loss = F.cross_entropy(run_batch(model, train, rows, qs), train.labels[qs])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(qs)
            seen += len(qs)
        test_acc = accuracy(model, test)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {total / seen:.4f}, test accuracy {test_acc:.4%} "
              f"({time.time() - t_train:.0f} s)", flush=True)
    train_seconds = time.time() - t_train

    model.eval()
    out = save_model_dir(model, cfg, vocab, answers, args.out)
    metrics = {
        "dataset": "easy-vqa 1.0 (PyPI)",
        "test_questions": len(test.labels),
        "test_accuracy": round(test_acc, 6),
        "train_accuracy": round(accuracy(model, train), 6),
        "epochs": args.epochs,
        "seed": args.seed,
        "parameters": params,
        "train_seconds": round(train_seconds, 1),
        "threads": args.threads,
        "torch": torch.__version__,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    if args.checkpoint:
        torch.save({"config": cfg, "state_dict": model.state_dict(), "vocab": vocab, "answers": answers},
                   args.checkpoint)
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

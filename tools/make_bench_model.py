"""Write a synthetic model directory for benchmarks: an MCAN-small-like model with seeded random weights.

  python tools/make_bench_model.py --out /tmp/mcan-small-like [--regions 36 --layers 2 ...]

Defaults: bottom-up-attention region features (36 x 2048, box features), LSTM over 300-d embeddings of
14 tokens, MCAN fusion with d = 512, 8 heads, FFN 2048, 2 + 2 layers, one pooling glimpse, out_dim 1024 and
3129 answers (the VQA v2 answer set's size): MCAN-small's widths with fewer layers and regions, so that a CPU run
stays short. Weights are PyTorch's default initialisation under --seed; they answer nothing sensible, which a
benchmark does not need. The vocabulary is made-up words (w0, w1, ...).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from export import save_model_dir  # noqa: E402
from vqa_ref.config import make_config  # noqa: E402
from vqa_ref.model import VQAModel  # noqa: E402


def bench_config(args: argparse.Namespace) -> dict:
    return make_config("regions", "lstm", "mcan", "classifier", overrides={
        "name": f"bench-regions{args.regions}-d{args.hidden}-h{args.heads}-l{args.layers}",
        "image.regions": {"feature_dim": args.feature_dim, "max_regions": args.regions, "box_features": True,
                          "box_dim": 64},
        "text": {"embed_dim": 300, "tokenizer": {"max_length": 14}},
        "fusion": {"hidden": args.hidden, "heads": args.heads, "ff": 4 * args.hidden, "layers": args.layers},
        "pool": {"mlp_hidden": args.hidden, "glimpses": 1, "out_dim": 2 * args.hidden},
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--regions", type=int, default=36, help="regions per image (default 36)")
    parser.add_argument("--feature-dim", type=int, default=2048, help="features per region (default 2048)")
    parser.add_argument("--hidden", type=int, default=512, help="fusion.hidden d (default 512); FFN = 4d")
    parser.add_argument("--heads", type=int, default=8, help="attention heads (default 8)")
    parser.add_argument("--layers", type=int, default=2, help="text SA and image SGA layers each (default 2)")
    parser.add_argument("--answers", type=int, default=3129, help="answer classes (default 3129)")
    parser.add_argument("--words", type=int, default=2000, help="vocabulary words besides <pad>, <unk>")
    parser.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    args = parser.parse_args(argv)

    cfg = bench_config(args)
    vocab = {"<pad>": 0, "<unk>": 1, **{f"w{i}": i + 2 for i in range(args.words)}}
    answers = [f"a{i}" for i in range(args.answers)]
    torch.manual_seed(args.seed)
    model = VQAModel(cfg, len(vocab), len(answers)).eval()
    save_model_dir(model, cfg, vocab, answers, args.out)
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {cfg['name']}, {params} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())

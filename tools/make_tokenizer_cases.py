#!/usr/bin/env python3
"""Write tests/data/tokenizer_cases.json: tricky questions and the ids the reference tokenizer gives them.

The C++ tokenizer test reads the file and must produce the same ids; tools/tests/test_tokenizer_cases.py checks
that the committed file is what this script writes, so both sides are pinned to one list.

    .venv/bin/python tools/make_tokenizer_cases.py
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vqa_ref.config import load_config  # noqa: E402
from vqa_ref.tokenizer import Tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "goldens" / "cnn_lstm_mcan_softmax"
OUT = ROOT / "tests" / "data" / "tokenizer_cases.json"

QUESTIONS = [
    "What color is the shape?",
    "what color is the shape",
    "WHAT COLOR IS THE SHAPE???",
    "Is there a RED-circle/square in the Zebra's picture?!",
    "is there a red - circle",
    "red/blue/green",
    "what's the shape's color?",
    "\"quoted\" (parenthesised) words; with: colons, #hashes and *stars*",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\r\nbetween\vwords\fhere",
    "unknownword anotherunknown shape",
    "caf\u00e9 na\u00efve \u00c9COLE shape",
    "\u5f62\u72b6\u306f\u4f55\u8272\u3067\u3059\u304b",
    "shape " * 20,
    "a-b-c-d-e-f-g-h-i-j-k-l-m-n-o-p",
    "...",
    "",
    "   ",
    "?!.,;:",
    "-/-/",
    "Is the shape 3D?",
    "what_is_this",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    cfg = load_config(MODEL / "config.json")
    vocab = json.loads((MODEL / "vocab.json").read_text(encoding="utf-8"))
    tok = Tokenizer(cfg["text"]["tokenizer"], vocab)
    cases = []
    for q in QUESTIONS:
        ids, n = tok.encode(q)
        cases.append({"question": q, "ids": ids, "length": n, "truncated": tok.is_truncated(q)})
    lines = ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases)
    text = f'{{"model": {json.dumps(str(MODEL.relative_to(ROOT)))},\n "cases": [\n{lines}\n]}}\n'
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

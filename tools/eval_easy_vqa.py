#!/usr/bin/env python3
"""Accuracy of the engine (vqa_infer's batch mode) on the easy-VQA test split.

Writes the 9,673 test questions as JSON Lines, runs `vqa_infer --batch` on them and compares the answers
with the dataset's. Prints the accuracy and the time the engine took.

    .venv/bin/python tools/eval_easy_vqa.py [--vqa-infer build/release/tools/vqa_infer] [--model models/easy-vqa]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vqa-infer", default=str(ROOT / "build" / "release" / "tools" / "vqa_infer"))
    ap.add_argument("--model", default=str(ROOT / "models" / "easy-vqa"))
    ap.add_argument("--max-batch", type=int, default=256)
    ap.add_argument("--limit", type=int, default=0, help="only the first N questions (0 = all)")
    args = ap.parse_args()

    import easy_vqa  # installed by scripts/setup.sh

    texts, answers, image_ids = easy_vqa.get_test_questions()
    paths = easy_vqa.get_test_image_paths()
    n = len(texts) if args.limit <= 0 else min(args.limit, len(texts))
    with tempfile.TemporaryDirectory() as tmp:
        batch, out = Path(tmp) / "questions.jsonl", Path(tmp) / "answers.jsonl"
        batch.write_text("".join(json.dumps({"id": i, "image": paths[image_ids[i]], "question": texts[i]}) + "\n"
                                 for i in range(n)))
        start = time.time()
        proc = subprocess.run([args.vqa_infer, "--model", args.model, "--batch", str(batch), "--output", str(out),
                               "--max-batch", str(args.max_batch)], capture_output=True, text=True)
        seconds = time.time() - start
        if proc.returncode not in (0, 3):
            print(proc.stderr, file=sys.stderr)
            return 1
        records = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    correct = sum(1 for i in range(n) if "answers" in records[i] and records[i]["answers"][0]["answer"] == answers[i])
    failed = sum(1 for r in records.values() if "error" in r)
    print(json.dumps({"questions": n, "correct": correct, "accuracy": correct / n, "errors": failed,
                      "engine_seconds": round(seconds, 2)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

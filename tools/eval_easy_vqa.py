#!/usr/bin/env python3
"""Accuracy of the engine (vqa_infer's batch mode) on the easy-VQA test split.

Writes the 9,673 test questions as JSON Lines, runs `vqa_infer --batch` on them and compares the answers
with the dataset's. Prints the accuracy and the time the engine took. With --compare-to DEVICE:PRECISION the
same questions also run on that backend, and the top-1 agreement between the two runs is printed (the CUDA
backend's fp16 against the CPU's fp32, say).

    .venv/bin/python tools/eval_easy_vqa.py [--vqa-infer build/release/tools/vqa_infer] [--model models/easy-vqa]
    python3 tools/eval_easy_vqa.py --device cuda --precision fp16 --compare-to cpu:fp32 \\
        --easy-vqa-path .venv/lib/python3.11/site-packages     # where the easy_vqa package is not installed
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


def run_engine(vqa_infer: str, model: str, batch: Path, out: Path, max_batch: int, device: str,
               precision: str) -> tuple[dict[int, dict], float] | None:
    """The answers of one vqa_infer --batch run by question id, and its wall time; None if it failed."""
    start = time.time()
    proc = subprocess.run([vqa_infer, "--model", model, "--batch", str(batch), "--output", str(out),
                           "--max-batch", str(max_batch), "--device", device, "--precision", precision],
                          capture_output=True, text=True)
    seconds = time.time() - start
    if proc.returncode not in (0, 3):
        print(proc.stderr, file=sys.stderr)
        return None
    return {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}, seconds


def top1(record: dict) -> str | None:
    return record["answers"][0]["answer"] if "answers" in record else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vqa-infer", default=str(ROOT / "build" / "release" / "tools" / "vqa_infer"))
    ap.add_argument("--model", default=str(ROOT / "models" / "easy-vqa"))
    ap.add_argument("--max-batch", type=int, default=256)
    ap.add_argument("--limit", type=int, default=0, help="only the first N questions (0 = all)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--compare-to", metavar="DEVICE:PRECISION",
                    help="also run on this backend (e.g. cpu:fp32) and report the top-1 agreement")
    ap.add_argument("--easy-vqa-path", help="a folder holding the easy_vqa package, put first on sys.path")
    args = ap.parse_args()

    if args.easy_vqa_path:
        sys.path.insert(0, args.easy_vqa_path)
    import easy_vqa  # installed by scripts/setup.sh

    texts, answers, image_ids = easy_vqa.get_test_questions()
    paths = easy_vqa.get_test_image_paths()
    n = len(texts) if args.limit <= 0 else min(args.limit, len(texts))
    with tempfile.TemporaryDirectory() as tmp:
        batch = Path(tmp) / "questions.jsonl"
        batch.write_text("".join(json.dumps({"id": i, "image": paths[image_ids[i]], "question": texts[i]}) + "\n"
                                 for i in range(n)))
        main_run = run_engine(args.vqa_infer, args.model, batch, Path(tmp) / "answers.jsonl", args.max_batch,
                              args.device, args.precision)
        if main_run is None:
            return 1
        records, seconds = main_run
        other = None
        if args.compare_to:
            device, _, precision = args.compare_to.partition(":")
            other = run_engine(args.vqa_infer, args.model, batch, Path(tmp) / "other.jsonl", args.max_batch,
                               device, precision or "fp32")
            if other is None:
                return 1
    correct = sum(1 for i in range(n) if top1(records[i]) == answers[i])
    failed = sum(1 for r in records.values() if "error" in r)
    report = {"questions": n, "device": args.device, "precision": args.precision, "correct": correct,
              "accuracy": correct / n, "errors": failed, "engine_seconds": round(seconds, 2)}
    if other is not None:
        other_records, other_seconds = other
        agree = sum(1 for i in range(n) if top1(records[i]) is not None and top1(records[i]) == top1(other_records[i]))
        report["compared_to"] = args.compare_to
        report["top1_agreement"] = agree / n
        report["disagreements"] = n - agree
        report["compared_engine_seconds"] = round(other_seconds, 2)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

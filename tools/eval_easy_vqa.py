#!/usr/bin/env python3
"""Accuracy of the engine (vqa_infer's batch mode) on the easy-VQA test split, and agreement between backends.

Writes the 9,673 test questions as JSON Lines, runs `vqa_infer --batch` on them and compares the answers
with the dataset's. Prints the accuracy and the time each run took (process start, model load and CUDA set-up
included). With --compare-to DEVICE:PRECISION (repeatable) the same questions also run on each of those backends,
and every pair of runs gets its top-1 agreement: the share of questions whose best answer is the same in both
(a question that failed in either run counts as a disagreement), the largest difference of the top-1 score where
they agree, and the first questions where they differ with both runs' two best answers.

    .venv/bin/python tools/eval_easy_vqa.py [--vqa-infer build/release/tools/vqa_infer] [--model models/easy-vqa]
    python3 tools/eval_easy_vqa.py --device cuda --precision fp16 --compare-to cpu:fp32 --compare-to cuda:fp32 \\
        --min-agreement 0.995 --budget-s 170 --easy-vqa-path build/release/gpu-check-bundle/python

--easy-vqa-path names a folder holding the easy_vqa package where it is not installed (scripts/gpu_check.sh
--bundle packs its code and test split). The runs go one after another in the order given, within --budget-s
seconds: a run that would outlast the budget is stopped and reported as timed out, one that would start with less
than 10 s left is skipped. Exit status 0 when every run that started finished and every pair of runs agrees on at
least --min-agreement of the questions (default 0: no threshold); 1 otherwise, or when --compare-to was given and
no pair of runs could be compared.
"""
from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MIN_RUN_S = 10  # a run given less than this would only load the model: skipped
TOP_K = 2  # the second answer shows whether a disagreement was a near tie


def parse_backend(text: str) -> tuple[str, str]:
    """DEVICE[:PRECISION] as (device, precision); fp32 when the precision is left out."""
    device, _, precision = text.partition(":")
    precision = precision or "fp32"
    if device not in ("auto", "cpu", "cuda") or precision not in ("fp32", "fp16", "bf16"):
        raise argparse.ArgumentTypeError(f"expected DEVICE:PRECISION (cpu, cuda or auto; fp32, fp16 or bf16), got "
                                         f"{text!r}")
    return device, precision


def run_engine(args: argparse.Namespace, batch: Path, out: Path, device: str, precision: str,
               timeout_s: float | None) -> dict[str, Any]:
    """One vqa_infer --batch run: its status, wall time and, when it finished, the answers by question id."""
    command = [args.vqa_infer, "--model", args.model, "--batch", str(batch), "--output", str(out), "--max-batch",
               str(args.max_batch), "--device", device, "--precision", precision, "--top-k", str(TOP_K)]
    start = time.monotonic()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"status": "timed out", "seconds": round(time.monotonic() - start, 2),
                "message": f"stopped after {timeout_s:.0f} s (the time budget)"}
    seconds = round(time.monotonic() - start, 2)
    # vqa_infer exits 3 when it answered the batch but some questions failed: those carry an "error" each.
    if proc.returncode not in (0, 3):
        message = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        return {"status": "failed", "seconds": seconds, "message": f"vqa_infer exit {proc.returncode}: {message}"}
    records = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    return {"status": "ok", "seconds": seconds, "records": records}


def top1(record: dict | None) -> tuple[str, float] | None:
    """The best answer of a record and its score; None for a question that failed or is missing."""
    if not record or not record.get("answers"):
        return None
    best = record["answers"][0]
    return best["answer"], best["score"]


def answers_text(record: dict | None) -> str:
    if not record or not record.get("answers"):
        return record.get("error", "no answer") if record else "missing"
    return ", ".join(f"{a['answer']} {a['score']:.4f}" for a in record["answers"])


def compare(name_a: str, a: dict, name_b: str, b: dict, n: int, questions: list[dict], expected: list[str],
            shown: int) -> dict[str, Any]:
    """Top-1 agreement of two finished runs over the first n questions."""
    agree, max_diff, examples = 0, 0.0, []
    for i in range(n):
        best_a, best_b = top1(a["records"].get(i)), top1(b["records"].get(i))
        if best_a is not None and best_b is not None and best_a[0] == best_b[0]:
            agree += 1
            max_diff = max(max_diff, abs(best_a[1] - best_b[1]))
        elif len(examples) < shown:
            examples.append({"id": i, "question": questions[i]["question"], "expected": expected[i],
                             name_a: answers_text(a["records"].get(i)), name_b: answers_text(b["records"].get(i))})
    return {"runs": [name_a, name_b], "top1_agreement": agree / n, "disagreements": n - agree,
            "max_top1_score_diff": max_diff, "examples": examples}


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: one row per run, one per pair of runs, then the disagreements shown."""
    lines = [f"easy-VQA test split, {report['questions']} questions, `{report['model']}`.", "",
             "| run | status | accuracy | correct | errors | seconds |", "|---|---|---|---|---|---|"]
    for run in report["runs"]:
        if run["status"] == "ok":
            lines.append(f"| {run['backend']} | ok | {100 * run['accuracy']:.2f} % | {run['correct']} | "
                         f"{run['errors']} | {run['seconds']} |")
        else:
            message = run.get("message", "").replace("|", "/")  # a "|" would end the cell
            lines.append(f"| {run['backend']} | {run['status']}: {message} | — | — | — | "
                         f"{run.get('seconds', '—')} |")
    threshold = report["min_agreement"]
    if report["agreement"]:
        header = "| runs | same top-1 | disagreements | max top-1 score difference |"
        if threshold:
            header += f" at least {100 * threshold:.1f} % |"
        lines += ["", header, "|---|---|---|---|" + ("---|" if threshold else "")]
        for pair in report["agreement"]:
            row = (f"| {pair['runs'][0]} vs {pair['runs'][1]} | {100 * pair['top1_agreement']:.3f} % | "
                   f"{pair['disagreements']} | {pair['max_top1_score_diff']:.2e} |")
            if threshold:
                row += " yes |" if pair["top1_agreement"] >= threshold else " **no** |"
            lines.append(row)
        if any(pair["examples"] for pair in report["agreement"]):
            lines.append("")
        for pair in report["agreement"]:
            for example in pair["examples"]:
                runs = "; ".join(f"{name}: {example[name]}" for name in pair["runs"])
                lines.append(f"- {pair['runs'][0]} vs {pair['runs'][1]}, question {example['id']} "
                             f"\"{example['question']}\" (expected {example['expected']}): {runs}")
    lines.append("")
    lines.append(f"Result: {'pass' if report['passed'] else '**fail**'}.")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vqa-infer", default=str(ROOT / "build" / "release" / "tools" / "vqa_infer"))
    ap.add_argument("--model", default=str(ROOT / "models" / "easy-vqa"))
    ap.add_argument("--max-batch", type=int, default=256)
    ap.add_argument("--limit", type=int, default=0, help="only the first N questions (0 = all)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--compare-to", metavar="DEVICE:PRECISION", type=parse_backend, action="append", default=[],
                    help="also run on this backend (e.g. cpu:fp32; repeatable) and report the top-1 agreement")
    ap.add_argument("--min-agreement", type=float, default=0.0,
                    help="fail when a pair of runs agrees on fewer questions than this share (DESIGN.md: 0.995)")
    ap.add_argument("--budget-s", type=float, default=0.0, help="seconds for all runs together (0 = no limit)")
    ap.add_argument("--show-disagreements", type=int, default=5, metavar="N",
                    help="questions listed per pair of runs that disagree (default 5)")
    ap.add_argument("--json-out", type=Path, help="also write the JSON report here")
    ap.add_argument("--markdown", type=Path, help="write the report as Markdown tables here")
    ap.add_argument("--easy-vqa-path", help="a folder holding the easy_vqa package, put first on sys.path")
    args = ap.parse_args()

    if args.easy_vqa_path:
        # Absolute, because the package makes its image paths from its own location, and vqa_infer reads a relative
        # image path relative to the batch file.
        sys.path.insert(0, str(Path(args.easy_vqa_path).resolve()))
    import easy_vqa  # installed by scripts/setup.sh, or packed by scripts/gpu_check.sh --bundle

    texts, expected, image_ids = easy_vqa.get_test_questions()
    paths = easy_vqa.get_test_image_paths()
    n = len(texts) if args.limit <= 0 else min(args.limit, len(texts))
    questions = [{"id": i, "image": paths[image_ids[i]], "question": texts[i]} for i in range(n)]
    backends = [(args.device, args.precision)] + args.compare_to
    deadline = time.monotonic() + args.budget_s if args.budget_s > 0 else None

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        batch = Path(tmp) / "questions.jsonl"
        batch.write_text("".join(json.dumps(q) + "\n" for q in questions))
        for index, (device, precision) in enumerate(backends):
            run: dict[str, Any] = {"backend": f"{device}:{precision}", "device": device, "precision": precision}
            timeout_s = None if deadline is None else deadline - time.monotonic()
            if timeout_s is not None and timeout_s < MIN_RUN_S:
                run.update(status="skipped", message=f"{max(timeout_s, 0):.0f} s of the time budget left")
            else:
                run.update(run_engine(args, batch, Path(tmp) / f"answers{index}.jsonl", device, precision,
                                      timeout_s))
            if run["status"] == "ok":
                records = run["records"]
                best = [top1(records.get(i)) for i in range(n)]
                run["correct"] = sum(1 for i in range(n) if best[i] is not None and best[i][0] == expected[i])
                run["accuracy"] = run["correct"] / n
                run["errors"] = sum(1 for answer in best if answer is None)
            print(f"{run['backend']}: {run['status']}" + (f" after {run['seconds']} s" if "seconds" in run else ""),
                  file=sys.stderr, flush=True)
            runs.append(run)

    finished = [run for run in runs if run["status"] == "ok"]
    agreement = [compare(a["backend"], a, b["backend"], b, n, questions, expected, args.show_disagreements)
                 for a, b in itertools.combinations(finished, 2)]
    passed = (all(run["status"] in ("ok", "skipped") for run in runs) and bool(finished) and
              all(pair["top1_agreement"] >= args.min_agreement for pair in agreement) and
              (bool(agreement) or not args.compare_to))
    report = {"questions": n, "model": args.model, "max_batch": args.max_batch, "min_agreement": args.min_agreement,
              "runs": [{k: v for k, v in run.items() if k != "records"} for run in runs], "agreement": agreement,
              "passed": passed}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(report))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())

"""The draft of bench/results/<date>-<gpu>.md from what scripts/gpu_check.sh left in its work folder.

  python3 bench/report_results.py --work WORK --summary OUT/summary.txt --markdown OUT/results.md \\
      [--json OUT/results.json]

Reads (every part optional: what is missing is said so in the draft, never an error):
  WORK/source.txt                       commit, working-tree state, build date and nvcc (gpu_check.sh writes it)
  WORK/gpu.txt                          nvidia-smi --query-gpu=name,driver_version,memory.total (csv)
  WORK/tests/<binary>.shard<i>.json     GoogleTest JSON of each shard; .log its output, .rc its exit status
  WORK/tests/<binary>.rerun<i>.{case,log,rc}   a failing case rerun alone in its own process
  WORK/sanitizer/<binary>.<tool>.{log,rc}       compute-sanitizer runs
  WORK/bench/<program>.json             Google Benchmark JSON of each kernel benchmark
  WORK/sdpa.jsonl                       bench/sdpa_bench.py's lines
and writes the markdown draft (date, GPU, driver, commit, summary, failing cases, sanitizer summaries, benchmark
tables, ours / SDPA) and, with --json, everything above merged into one JSON file. Standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sdpa_bench import format_join, join_attention, read_json, read_json_lines  # noqa: E402

MAX_FAILURES_SHOWN = 20  # failing cases listed per binary; the rest are counted
MAX_FAILURE_LINES = 12  # lines of each failure message
BENCH_FIELDS = {"name", "family_index", "per_family_instance_index", "run_name", "run_type", "repetitions",
                "repetition_index", "threads", "iterations", "real_time", "cpu_time", "time_unit", "error_occurred",
                "error_message", "label", "aggregate_name", "aggregate_unit"}
COUNTER_ORDER = ("us", "GB/s", "bw_frac", "TFLOP/s", "flop_frac", "baseline_us", "vs_baseline")
RESULT_LINE = re.compile(r"^\[\s+(OK|FAILED|SKIPPED)\s+\] (\S+)")
RUN_LINE = re.compile(r"^\[ RUN      \] (\S+)")


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def exit_status(path: Path) -> int | None:
    text = read_text(path).strip()
    return int(text) if text.lstrip("-").isdigit() else None


def describe_status(rc: int | None) -> str:
    if rc is None:
        return "did not run"
    if rc == 0:
        return "ok"
    if rc in (124, 137):
        return f"timed out (exit {rc})"
    if rc > 128:
        return f"killed by signal {rc - 128}"
    return f"exit {rc}"


# ---- gpu tests ----

def unfinished_case(log: str) -> str | None:
    """The case a crashed or killed shard was running: the last RUN line without a result line."""
    finished = {m.group(2) for m in map(RESULT_LINE.match, log.splitlines()) if m}
    started = [m.group(1) for m in map(RUN_LINE.match, log.splitlines()) if m]
    for case in reversed(started):
        if case not in finished:
            return case
    return None


def collect_tests(folder: Path) -> dict[str, dict[str, Any]]:
    """Per binary: counts, failing cases with their messages, shards that ended abnormally, isolated reruns."""
    binaries: dict[str, dict[str, Any]] = {}
    for rc_path in sorted(folder.glob("*.shard*.rc")):
        binary, shard = rc_path.name[:-len(".rc")].rsplit(".", 1)
        entry = binaries.setdefault(binary, {"passed": 0, "failed": 0, "skipped": 0, "failures": [],
                                             "abnormal": [], "reruns": []})
        rc = exit_status(rc_path)
        report = read_json(rc_path.with_suffix(".json"))
        if report is None or rc not in (0, 1):
            case = unfinished_case(read_text(rc_path.with_suffix(".log")))
            entry["abnormal"].append({"shard": shard, "status": describe_status(rc), "case": case})
        for suite in (report or {}).get("testsuites", []):
            for test in suite.get("testsuite", []):
                name = f"{suite.get('name')}.{test.get('name')}"
                if test.get("failures"):
                    entry["failed"] += 1
                    message = "\n".join(f.get("failure", "") for f in test["failures"])
                    entry["failures"].append({"case": name, "message": message})
                elif test.get("result") == "SKIPPED":
                    entry["skipped"] += 1
                elif test.get("status", "RUN") == "RUN":
                    entry["passed"] += 1
    for case_path in sorted(folder.glob("*.rerun*.case")):
        binary = case_path.name.split(".rerun", 1)[0]
        rc = exit_status(case_path.with_suffix(".rc"))
        binaries.setdefault(binary, {"passed": 0, "failed": 0, "skipped": 0, "failures": [], "abnormal": [],
                                     "reruns": []})["reruns"].append(
            {"case": read_text(case_path).strip(), "status": "passed" if rc == 0 else describe_status(rc)})
    return binaries


def tests_markdown(binaries: dict[str, dict[str, Any]]) -> list[str]:
    if not binaries:
        return ["No gpu test ran (see the summary)."]
    lines = ["| binary | passed | failed | skipped | shards that ended abnormally |", "|---|---:|---:|---:|---|"]
    for binary, e in binaries.items():
        abnormal = "; ".join(f"{a['shard']} {a['status']}" + (f" in {a['case']}" if a["case"] else "")
                             for a in e["abnormal"]) or "—"
        lines.append(f"| {binary} | {e['passed']} | {e['failed']} | {e['skipped']} | {abnormal} |")
    for binary, e in binaries.items():
        if not (e["failures"] or e["abnormal"] or e["reruns"]):
            continue
        lines += ["", f"### {binary}"]
        for failure in e["failures"][:MAX_FAILURES_SHOWN]:
            message = failure["message"].strip().splitlines()[:MAX_FAILURE_LINES]
            lines += [f"- `{failure['case']}`", "  ```", *(f"  {line}" for line in message), "  ```"]
        if len(e["failures"]) > MAX_FAILURES_SHOWN:
            lines.append(f"- and {len(e['failures']) - MAX_FAILURES_SHOWN} more failing cases (gpu_tests.log)")
        for rerun in e["reruns"]:
            lines.append(f"- rerun alone: `{rerun['case']}`: {rerun['status']}")
    return lines


# ---- compute-sanitizer ----

def collect_sanitizer(folder: Path) -> list[dict[str, Any]]:
    runs = []
    for rc_path in sorted(folder.glob("*.rc")):
        binary, tool = rc_path.name[:-len(".rc")].rsplit(".", 1)
        log = read_text(rc_path.with_suffix(".log"))
        summary = [line.strip("= ").strip() for line in log.splitlines() if "SUMMARY" in line]
        if not summary:  # e.g. "Device not supported": the first error line says why
            summary = [line.strip("= ").strip() for line in log.splitlines() if "rror" in line][:1]
        runs.append({"binary": binary, "tool": tool, "status": describe_status(exit_status(rc_path)),
                     "summary": "; ".join(summary) or "no summary line"})
    return runs


def sanitizer_markdown(runs: list[dict[str, Any]]) -> list[str]:
    if not runs:
        return ["compute-sanitizer did not run (see the summary)."]
    lines = ["| binary | tool | status | summary |", "|---|---|---|---|"]
    lines += [f"| {r['binary']} | {r['tool']} | {r['status']} | {r['summary']} |" for r in runs]
    return lines


# ---- benchmarks ----

def number(value: Any) -> str:
    if not isinstance(value, (int, float)) or (isinstance(value, float) and math.isnan(value)):
        return "—"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}" if magnitude < 1 else f"{value:.2f}"


def bench_markdown(program: str, report: dict[str, Any] | None) -> list[str]:
    if report is None:
        return [f"### {program}", "", "No JSON (the program did not finish; see bench.log)."]
    rows = [b for b in report.get("benchmarks", []) if b.get("run_type", "iteration") == "iteration"]
    counters = [c for c in COUNTER_ORDER if any(c in b for b in rows)]
    counters += sorted({k for b in rows for k, v in b.items()
                        if k not in BENCH_FIELDS and k not in counters and isinstance(v, (int, float))})
    lines = [f"### {program}", "", "| benchmark | " + " | ".join(counters) + " |",
             "|---|" + "---:|" * len(counters)]
    for b in rows:
        name = str(b.get("name", "")).removesuffix("/manual_time")
        if b.get("error_occurred"):
            lines.append(f"| {name} | error: {b.get('error_message', '')} |")
            continue
        lines.append(f"| {name} | " + " | ".join(number(b.get(c)) for c in counters) + " |")
    return lines


# ---- the draft ----

def key_values(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key:
            values[key] = value.strip()
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, type=Path, help="gpu_check.sh's work folder")
    parser.add_argument("--summary", required=True, type=Path, help="summary.txt: one line per step")
    parser.add_argument("--markdown", required=True, type=Path, help="the draft to write")
    parser.add_argument("--json", type=Path, help="everything merged, to write")
    args = parser.parse_args(argv)
    work = args.work

    source = key_values(read_text(work / "source.txt"))
    gpus = [line.strip() for line in read_text(work / "gpu.txt").splitlines() if line.strip()]
    gpu_fields = [field.strip() for field in gpus[0].split(",")] if gpus else []
    gpu_name = gpu_fields[0] if gpu_fields else "no GPU"
    driver = gpu_fields[1] if len(gpu_fields) > 1 else "no driver"
    sdpa_lines = read_json_lines(work / "sdpa.jsonl")
    sdpa_env = next((line for line in sdpa_lines or [] if line.get("kind") == "environment"), {})
    benches = {path.stem: read_json(path) for path in sorted((work / "bench").glob("*.json"))}
    tests = collect_tests(work / "tests")
    sanitizer = collect_sanitizer(work / "sanitizer")
    summary = read_text(args.summary).strip()

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    commit = source.get("commit", "unknown")
    state = source.get("state", "")
    device = f"{gpu_name} (driver {driver})" if gpus else "no GPU"
    title = f"# {date}, {device}, commit {commit[:12]}" + (f" ({state})" if state and state != "clean" else "")
    lines = [title, ""]
    lines += [f"- Devices: {'; '.join(gpus) or 'none found'}",
              f"- Binaries: built {source.get('built', '?')} with CUDA {source.get('nvcc', '?')}",
              f"- PyTorch: {sdpa_env.get('torch', '—')} (CUDA {sdpa_env.get('cuda', '—')}, "
              f"cuDNN {sdpa_env.get('cudnn', '—')}, device {sdpa_env.get('device', '—')})", ""]
    lines += ["## Summary", "", "```", summary or "no summary.txt", "```", ""]
    lines += ["## gpu tests", "", *tests_markdown(tests), ""]
    lines += ["## compute-sanitizer", "", *sanitizer_markdown(sanitizer), ""]
    lines += ["## Benchmarks", "",
              "Counters: us per call; GB/s and bw_frac (of 4.3 TB/s copy); TFLOP/s and flop_frac (of 790 dense "
              "fp16/bf16, 60 fp32); baseline_us and vs_baseline (> 1: faster than the baseline). See "
              "docs/gpu-check.md for what each baseline is.", ""]
    for program, report in benches.items():
        lines += [*bench_markdown(program, report), ""]
    if not benches:
        lines += ["No benchmark JSON (see the summary).", ""]
    lines += ["## Attention against PyTorch SDPA", ""]
    if sdpa_env.get("skipped"):
        lines += [f"sdpa_bench skipped: {sdpa_env['skipped']}.", ""]
    lines.append(format_join(join_attention(benches.get("attention_bench"), sdpa_lines)))
    refusals = {}
    for line in sdpa_lines or []:
        for backend, result in line.get("backends", {}).items():
            if "error" in result:
                refusals.setdefault(backend, set()).add(result["error"])
    for backend, reasons in refusals.items():
        lines.append(f"- {backend} refused some shapes: {' | '.join(sorted(reasons))}")
    args.markdown.write_text("\n".join(lines).rstrip() + "\n")

    if args.json:
        merged = {"date": date, "source": source, "gpus": gpus, "summary": summary.splitlines(), "tests": tests,
                  "sanitizer": sanitizer, "benchmarks": benches, "sdpa": sdpa_lines}
        args.json.write_text(json.dumps(merged, indent=1) + "\n")
    print(f"report_results: wrote {args.markdown}" + (f" and {args.json}" if args.json else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The gain of padding removal, from `vqa_bench --padding packed,padded --json` files, as a Markdown table.

  python tools/bench_padding.py FILE_OR_DIR...

Every vqa_bench JSON given (or found as *.json in a folder given) that timed both modes counts; files of the same
model, device, precision and thread count are rounds of one measurement (scripts/bench_cpu.sh), and each figure
is the median over rounds of the round's median. gain = padded ms / packed ms: above 1 packing is faster (1.5 = a
third less time); `range` is the smallest and largest gain of a single round. docs/benchmarks.md explains it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

Key = tuple[str, str, str, int]  # model name, device, precision, threads


def load(paths: list[Path]) -> dict[Key, list[dict[str, Any]]]:
    """The reports with both modes, grouped as rounds of one measurement."""
    files = [f for p in paths for f in (sorted(p.glob("*.json")) if p.is_dir() else [p])]
    groups: dict[Key, list[dict[str, Any]]] = {}
    for path in files:
        report = json.loads(path.read_text(encoding="utf-8"))
        if report.get("tool") != "vqa_bench" or set(report.get("padding", [])) != {"packed", "padded"}:
            continue
        key = (report["model"]["name"], report["device"], report.get("precision", "fp32"), report["threads"])
        groups.setdefault(key, []).append(report)
    return groups


def median_ms(rows: list[dict[str, Any]], mode: str, field: str) -> float | None:
    values = [r["by_padding"][mode][field]["median"] for r in rows if field in r["by_padding"][mode]]
    return statistics.median(values) if len(values) == len(rows) else None


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(groups: dict[Key, list[dict[str, Any]]]) -> list[str]:
    lines = ["| model | device | precision | threads | batch | images | regions per image | packed ms | padded ms "
             "| gain | range over rounds | from features packed ms | padded ms | gain | same top-1 |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for (model, device, precision, threads), reports in sorted(groups.items()):
        for batch in sorted({r["batch"] for rep in reports for r in rep["results"]}):
            rows = [r for rep in reports for r in rep["results"] if r["batch"] == batch]
            packed, padded = median_ms(rows, "packed", "latency_ms"), median_ms(rows, "padded", "latency_ms")
            gains = [r["packing_gain"]["latency"] for r in rows]
            fwd_packed = median_ms(rows, "packed", "from_features_ms")
            fwd_padded = median_ms(rows, "padded", "from_features_ms")
            fwd_gain = fwd_padded / fwd_packed if fwd_packed and fwd_padded else None
            regions = rows[0].get("regions")
            per_image = "-" if regions is None else f"{regions / rows[0]['images']:.1f}"
            same = min(r["packing_gain"]["same_top1"] for r in rows)
            lines.append(f"| {model} | {device} | {precision} | {threads} | {batch} | {rows[0]['images']} "
                         f"| {per_image} | {fmt(packed, '.3f')} | {fmt(padded, '.3f')} | {padded / packed:.3f} "
                         f"| {min(gains):.3f}-{max(gains):.3f} ({len(rows)}) | {fmt(fwd_packed, '.3f')} "
                         f"| {fmt(fwd_padded, '.3f')} | {fmt(fwd_gain, '.3f')} | {same}/{batch} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", type=Path, nargs="+", help="vqa_bench JSON files, or folders of them")
    args = parser.parse_args(argv)
    groups = load(args.paths)
    if not groups:
        print(f"error: no vqa_bench --padding packed,padded results in {[str(p) for p in args.paths]}",
              file=sys.stderr)
        return 1
    print("\n".join(table(groups)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

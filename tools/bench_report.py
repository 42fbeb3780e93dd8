"""Compare vqa_bench and bench_torch.py results: one Markdown table, engine/PyTorch ratio per batch size.

  python tools/bench_report.py --dir RESULTS [--binary build/release/tools/vqa_bench]

RESULTS holds pairs engine-<model>-t<threads>[-r<round>].json (vqa_bench --json) and
torch-<model>-t<threads>[-r<round>].json (bench_torch.py --json), as scripts/bench_cpu.sh writes them; with
several rounds, each latency is the median over rounds of the rounds' own statistic. --binary names the
vqa_bench that ran, to report the OpenBLAS it loads and the core type OpenBLAS picks in this environment.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

RUN_NAME = re.compile(r"^(?P<side>engine|torch)-(?P<model>.+)-t(?P<threads>\d+)(-r(?P<round>\d+))?\.json$")


def cpu_model() -> str:
    """The model name, family/model numbers and widest vector extension of the first CPU."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if not key.strip():
                break  # end of the first processor's block
            info.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or "unknown"
    flags = info.get("flags", "").split()
    vector = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "none")
    return (f"{info.get('model name', 'unknown')} (family {info.get('cpu family', '?')}, model "
            f"{info.get('model', '?')}, {vector})")


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def linked_openblas(binary: Path) -> str | None:
    """The libopenblas that `binary` (or the libvqa it links) resolves to, from ldd."""
    try:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in out.splitlines():
        if "libopenblas" in line and "=>" in line:
            return os.path.realpath(line.split("=>", 1)[1].split("(")[0].strip())
    return None


def openblas_core(path: str | None) -> str:
    """Core type and build config OpenBLAS picks in this environment (OPENBLAS_CORETYPE overrides it)."""
    if path is None:
        return "unknown (no libopenblas found)"
    try:
        lib = ctypes.CDLL(path)
        lib.openblas_get_corename.restype = ctypes.c_char_p
        lib.openblas_get_config.restype = ctypes.c_char_p
        return f"{lib.openblas_get_corename().decode()} ({lib.openblas_get_config().decode()}, {path})"
    except (OSError, AttributeError) as e:
        return f"unknown ({e})"


def build_info(binary: Path) -> str:
    """Build type and compiler of the CMake build folder that holds `binary` (<build>/tools/vqa_bench)."""
    cache = binary.resolve().parent.parent / "CMakeCache.txt"
    try:
        entries = dict(re.findall(r"^(CMAKE_BUILD_TYPE|CMAKE_CXX_COMPILER):\w+=(.*)$",
                                  cache.read_text(encoding="utf-8"), re.MULTILINE))
        version = subprocess.run([entries["CMAKE_CXX_COMPILER"], "--version"], capture_output=True, text=True,
                                 check=True).stdout.splitlines()[0]
    except (OSError, KeyError, IndexError, subprocess.CalledProcessError):
        return f"unknown ({cache} unreadable)"
    return f"{entries.get('CMAKE_BUILD_TYPE') or '(no build type)'}, {version}"


def environment(binary: Path | None) -> list[str]:
    lines = [f"CPU: {cpu_model()}, {os.cpu_count()} logical cores, {memory_gib():.0f} GiB RAM",
             f"OS: {platform.system()} {platform.release()} ({platform.machine()}), Python {platform.python_version()}",
             f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
             f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}, "
             f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}"]
    if binary is not None:
        lines.append(f"vqa_bench build: {build_info(binary)}")
        lines.append(f"OpenBLAS core in effect: {openblas_core(linked_openblas(binary))}")
    return lines


Rounds = dict[str, dict[int, dict[str, Any]]]  # side ("engine", "torch") -> round -> report


def load_runs(directory: Path) -> dict[tuple[str, int], Rounds]:
    """(model tag, threads) -> side -> round -> report (round 0 for files without -r<k>)."""
    runs: dict[tuple[str, int], Rounds] = {}
    for path in sorted(directory.glob("*.json")):
        m = RUN_NAME.match(path.name)
        if m is None:
            continue
        report = json.loads(path.read_text(encoding="utf-8"))
        load_file = path.with_suffix(".other-load")  # written by scripts/bench_cpu.sh
        report["other_load"] = float(load_file.read_text()) if load_file.exists() else None
        side = runs.setdefault((m["model"], int(m["threads"])), {}).setdefault(m["side"], {})
        side[int(m["round"] or 0)] = report
    return runs


def paired_rounds(sides: Rounds) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(engine, torch) reports of the rounds that both sides ran, in round order."""
    engine, torch = sides.get("engine", {}), sides.get("torch", {})
    return [(engine[r], torch[r]) for r in sorted(set(engine) & set(torch))]


def by_batch(report: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {r["batch"]: r for r in report["results"]}


def agreement(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    """Top-1 answers equal on both sides, the worst round."""
    counts = [sum(x == y for x, y in zip(e["answers"], t["answers"])) for e, t in pairs
              if len(e["answers"]) == len(t["answers"])]
    return f"{min(counts)}/{len(pairs[0][0]['answers'])}" if len(counts) == len(pairs) else "n/a"


def other_load(reports: list[dict[str, Any]]) -> str:
    """The most CPU (cores) other processes took during any of these steps (scripts/bench_cpu.sh measures it)."""
    loads = [r.get("other_load") for r in reports]
    return "n/a" if None in loads else f"{max(loads):.2f}"


def table(runs: dict[tuple[str, int], Rounds]) -> list[str]:
    """Medians over rounds of each round's median and p90; the ratio's range is over rounds; "fastest" compares
    the fastest call of each side over all rounds (the machine's quiet moments)."""
    rows = ["| model | threads | batch | images | engine median ms | engine p90 ms | torch median ms | torch p90 ms "
            "| engine/torch time | range over rounds | engine/torch fastest | engine q/s | torch q/s | same top-1 "
            "| other load |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for (model, threads), sides in sorted(runs.items()):
        pairs = paired_rounds(sides)
        if not pairs:
            continue
        for batch, first in by_batch(pairs[0][0]).items():
            rounds = [(by_batch(e).get(batch), by_batch(t).get(batch)) for e, t in pairs]
            if any(e is None or t is None for e, t in rounds):
                continue
            stat = {f"{side}_{key}": statistics.median(r[i]["latency_ms"][key] for r in rounds)
                    for i, side in enumerate(("engine", "torch")) for key in ("median", "p90")}
            ratio = stat["engine_median"] / stat["torch_median"]
            per_round = [e["latency_ms"]["median"] / t["latency_ms"]["median"] for e, t in rounds]
            fastest = min(e["latency_ms"]["min"] for e, _ in rounds) / min(t["latency_ms"]["min"] for _, t in rounds)
            batch_pairs = [({"answers": e["answers"]}, {"answers": t["answers"]}) for e, t in rounds]
            rows.append(f"| {model} | {threads} | {batch} | {first['images']} | {stat['engine_median']:.2f} | "
                        f"{stat['engine_p90']:.2f} | {stat['torch_median']:.2f} | {stat['torch_p90']:.2f} | "
                        f"**{ratio:.2f}** | {min(per_round):.2f}-{max(per_round):.2f} ({len(rounds)}) | "
                        f"{fastest:.2f} | "
                        f"{batch / stat['engine_median'] * 1000:.0f} | {batch / stat['torch_median'] * 1000:.0f} | "
                        f"{agreement(batch_pairs)} | {other_load([r for pair in pairs for r in pair])} |")
    return rows


def memory_table(runs: dict[tuple[str, int], Rounds]) -> list[str]:
    rows = ["| model | threads | engine peak RSS MiB | torch peak RSS MiB | engine load ms | torch load ms |",
            "|---|---:|---:|---:|---:|---:|"]
    for (model, threads), sides in sorted(runs.items()):
        pairs = paired_rounds(sides)
        if pairs:
            engine, torch = [p[0] for p in pairs], [p[1] for p in pairs]
            rows.append(f"| {model} | {threads} | {max(r['peak_rss_mib'] for r in engine):.1f} | "
                        f"{max(r['peak_rss_mib'] for r in torch):.1f} | "
                        f"{statistics.median(r['load_ms'] for r in engine):.1f} | "
                        f"{statistics.median(r['load_ms'] for r in torch):.1f} |")
    return rows


def versions(runs: dict[tuple[str, int], Rounds]) -> list[str]:
    for sides in runs.values():
        for e, t in paired_rounds(sides):
            blas = t["torch"]["blas"]
            return [f"vqa-engine {e['version']} (vqa_bench), device {e['device']}",
                    f"PyTorch {t['torch']['version']}, NumPy {t['numpy']}, Python {t['python']}; "
                    f"torch's OpenBLAS core: {blas.get('openblas_core')}",
                    "torch config: " + "; ".join(c for c in t["torch"]["config"] if "threads" not in c.lower())]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, required=True, help="folder of engine-*.json and torch-*.json")
    parser.add_argument("--binary", type=Path, help="the vqa_bench that ran (to report its OpenBLAS)")
    args = parser.parse_args(argv)
    runs = load_runs(args.dir)
    if not any(paired_rounds(sides) for sides in runs.values()):
        print(f"error: {args.dir}: no engine-*/torch-* result pairs", file=sys.stderr)
        return 1
    for line in environment(args.binary) + versions(runs):
        print(f"- {line}")
    print()
    print("\n".join(table(runs)))
    print()
    print("\n".join(memory_table(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

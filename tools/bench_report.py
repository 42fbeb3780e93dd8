"""Compare vqa_bench and bench_torch.py results as Markdown tables: the engine against PyTorch per batch size.

  python tools/bench_report.py --dir RESULTS [--binary build/release/tools/vqa_bench]

CPU: RESULTS holds pairs engine-<model>-t<threads>[-r<round>].json (vqa_bench --json) and
torch-<model>-t<threads>[-r<round>].json (bench_torch.py --json), as scripts/bench_cpu.sh writes them; with
several rounds, each latency is the median over rounds of the rounds' own statistic. --binary names the
vqa_bench that ran, to report the OpenBLAS it loads and the core type OpenBLAS picks in this environment.

GPU: every other *.json of RESULTS from either tool whose device is not the CPU (scripts/bench_gpu.sh writes
them) is joined by (model name, device, precision, batch): the engine against each PyTorch mode (eager, sdpa,
compile, compile-ro), per whole call and from features, and the targets of the CUDA backend marked met or not.
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


def by_batch(report: dict[str, Any], mode: str = "eager") -> dict[int, dict[str, Any]]:
    """The measured rows of one mode (vqa_bench's rows, and older bench_torch files, have no mode: eager)."""
    return {r["batch"]: r for r in report["results"]
            if r.get("mode", "eager") == mode and r.get("status", "ok") == "ok"}


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


# The CUDA backend's targets (its issue): batch 1 against eager and compile-ro, batch 256 throughput.
MODES = ("eager", "sdpa", "compile", "compile-ro")
LATENCY_TARGET_MS = 0.25  # batch 1, from features
TARGETS = ((1, "eager", 10.0), (1, "compile-ro", 2.0), (256, "eager", 2.5), (256, "compile", 1.3))
BASES = (("call", "latency_ms"), ("from features", "from_features_ms"))

Key = tuple[str, str, str]  # model name, device, precision


def device_reports(directory: Path) -> tuple[dict[Key, dict[str, Any]], dict[Key, dict[str, Any]]]:
    """(engine, torch) reports by (model, device, precision) from the *.json files that are not the CPU
    pairs' and whose device is not the CPU; of two files with the same key, the later by name counts."""
    sides: tuple[dict[Key, dict[str, Any]], dict[Key, dict[str, Any]]] = ({}, {})
    for path in sorted(directory.glob("*.json")):
        if RUN_NAME.match(path.name):
            continue
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        tool = report.get("tool") if isinstance(report, dict) else None
        if tool not in ("vqa_bench", "bench_torch") or report.get("device", "cpu") == "cpu":
            continue
        key = (report["model"]["name"], report["device"], report.get("precision", "fp32"))
        sides[1 if tool == "bench_torch" else 0][key] = report
    return sides


def median_of(row: dict[str, Any] | None, field: str) -> float | None:
    return row[field]["median"] if row is not None and isinstance(row.get(field), dict) else None


def mode_rows(report: dict[str, Any] | None, mode: str) -> dict[int, dict[str, Any]]:
    """The rows of one mode by batch, measured or not (skipped and error rows carry a reason)."""
    if report is None:
        return {}
    return {r["batch"]: r for r in report["results"] if r.get("mode", "eager") == mode}


def mode_note(report: dict[str, Any] | None, mode: str) -> str | None:
    """Why a whole mode did not run, if it did not."""
    if report is None:
        return "no PyTorch run"
    return next((s["reason"] for s in report.get("skipped", []) if s["mode"] == mode), None)


def speedup(ours: float | None, theirs: float | None) -> float | None:
    """How many times faster the engine is: PyTorch time / engine time."""
    return theirs / ours if ours and theirs else None


def cell(ours: float | None, row: dict[str, Any] | None, field: str) -> str:
    if row is None:
        return "-"
    if row.get("status", "ok") != "ok":
        return row["status"]
    theirs = median_of(row, field)
    if theirs is None:
        return "-"
    ratio = speedup(ours, theirs)
    return f"{theirs:.3f}" if ratio is None else f"{theirs:.3f} ({ratio:.2f}x)"


def same_top1(engine_row: dict[str, Any] | None, torch_row: dict[str, Any] | None) -> str:
    if engine_row is None or torch_row is None or torch_row.get("status", "ok") != "ok":
        return "n/a"
    a, b = engine_row.get("answers", []), torch_row.get("answers", [])
    return f"{sum(x == y for x, y in zip(a, b))}/{len(a)}" if len(a) == len(b) else "n/a"


def ratio_table(engine: dict[str, Any] | None, torch: dict[str, Any] | None, field: str) -> list[str]:
    """One row per batch: the engine's median ms and questions/s, each PyTorch mode's median ms and the
    engine's speedup over it (PyTorch ms / engine ms, which is also the ratio of questions/s)."""
    rows = ["| batch | engine ms | engine q/s | " + " | ".join(f"{m} ms (engine x)" for m in MODES)
            + " | same top-1 as eager |", "|---:|---:|---:|" + "---:|" * len(MODES) + "---:|"]
    ours = by_batch(engine) if engine is not None else {}
    per_mode = {m: mode_rows(torch, m) for m in MODES}
    batches = sorted(set(ours) | {b for rows in per_mode.values() for b in rows})
    for batch in batches:
        mine = median_of(ours.get(batch), field)
        qps = f"{batch / mine * 1000:.0f}" if mine else "-"
        cells = [cell(mine, per_mode[m].get(batch), field) for m in MODES]
        rows.append(f"| {batch} | {'-' if mine is None else f'{mine:.3f}'} | {qps} | " + " | ".join(cells)
                    + f" | {same_top1(ours.get(batch), per_mode['eager'].get(batch))} |")
    return rows


def verdict(value: float | None, required: float, at_most: bool = False) -> str:
    if value is None:
        return "n/a"
    return "yes" if (value <= required if at_most else value >= required) else "**no**"


def target_rows(model: str, precision: str, engine: dict[str, Any] | None,
                torch: dict[str, Any] | None) -> list[str]:
    ours = by_batch(engine) if engine is not None else {}
    latency = median_of(ours.get(1), "from_features_ms")
    rows = [f"| {model} | {precision} | batch 1 latency <= {LATENCY_TARGET_MS} ms | from features | "
            f"{'n/a' if latency is None else f'{latency:.3f} ms'} | - | - | "
            f"{verdict(latency, LATENCY_TARGET_MS, at_most=True)} |"]
    for batch, mode, required in TARGETS:
        what = "latency" if batch == 1 else "throughput"
        for basis, field in BASES:
            mine, theirs = median_of(ours.get(batch), field), median_of(mode_rows(torch, mode).get(batch), field)
            ratio = speedup(mine, theirs)
            rows.append(f"| {model} | {precision} | batch {batch} {what} >= {required}x {mode} | {basis} | "
                        f"{'n/a' if mine is None else f'{mine:.3f} ms'} | "
                        f"{'n/a' if theirs is None else f'{theirs:.3f} ms'} | "
                        f"{'n/a' if ratio is None else f'{ratio:.2f}x'} | {verdict(ratio, required)} |")
    return rows


def compile_memory_table(torch: dict[str, Any]) -> list[str]:
    rows = ["| mode | batch | first call ms (compilation for compile modes) | peak device MiB |",
            "|---|---:|---:|---:|"]
    for r in torch["results"]:
        if r.get("status", "ok") == "ok":
            first, peak = r.get("first_call_ms"), r.get("peak_device_mib")
            rows.append(f"| {r['mode']} | {r['batch']} | {'-' if first is None else f'{first:.1f}'} | "
                        f"{'-' if peak is None else f'{peak:.1f}'} |")
    return rows


def gpu_environment(engine: dict[Key, dict[str, Any]], torch: dict[Key, dict[str, Any]]) -> list[str]:
    lines = [f"host CPU: {cpu_model()}, {os.cpu_count()} logical cores"]
    for report in list(engine.values())[:1]:
        lines.append(f"vqa-engine {report.get('version', '?')} (vqa_bench)")
    for report in list(torch.values())[:1]:
        c = report.get("cuda") or {}
        lines.append(f"PyTorch {report['torch']['version']}, CUDA {c.get('cuda_version')}, cuDNN "
                     f"{c.get('cudnn_version')}, {c.get('device_name')} (sm {c.get('capability')}, "
                     f"{c.get('multiprocessors')} SMs), TF32 matmul {c.get('tf32_matmul')}, "
                     f"TF32 cuDNN {c.get('tf32_cudnn')}, Python {report['python']}")
    for (model, _, precision), report in sorted(torch.items()):
        sdpa = report.get("sdpa") or {}
        if sdpa.get("status") == "ok":
            forced = "; ".join(f"{k}: {v}" for k, v in sdpa.get("backends", {}).items())
            lines.append(f"SDPA for {model} {precision}: default kernels "
                         f"{', '.join(sdpa.get('default_kernels', [])) or 'none'}; forced: {forced}")
        elif sdpa:
            lines.append(f"SDPA for {model} {precision}: {sdpa.get('status')}: {sdpa.get('reason')}")
    return lines


def device_section(engine: dict[Key, dict[str, Any]], torch: dict[Key, dict[str, Any]]) -> list[str]:
    """The GPU comparison: per (model, device, precision) the ratio tables, then all targets in one table."""
    out = ["## Engine against PyTorch on the GPU", ""] + [f"- {line}" for line in gpu_environment(engine, torch)]
    targets = ["| model | precision | target | basis | engine | PyTorch | engine x | met |",
               "|---|---|---|---|---:|---:|---:|---|"]
    for key in sorted(set(engine) | set(torch)):
        model, device, precision = key
        e, t = engine.get(key), torch.get(key)
        out += ["", f"### {model}, {device}, {precision}", ""]
        if e is None:
            out.append("No vqa_bench result for this model and precision: PyTorch alone below.")
        notes = [f"{m}: skipped: {mode_note(t, m)}" for m in MODES if mode_note(t, m)]
        notes += [f"{r['mode']} batch {r['batch']}: {r['status']}: {r['reason']}"
                  for r in (t or {}).get("results", []) if r.get("status", "ok") != "ok"]
        out += [f"- {n}" for n in notes]
        for title, field in (("Whole call (Engine::answer)", "latency_ms"),
                             ("From features (forward only)", "from_features_ms")):
            out += ["", f"{title}, median ms; in brackets the engine's speedup (PyTorch ms / engine ms):", ""]
            out += ratio_table(e, t, field)
        if t is not None:
            out += ["", "PyTorch first calls and memory:", ""] + compile_memory_table(t)
        targets += target_rows(model, precision, e, t)
    out += ["", "### Targets", ""] + targets
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, required=True, help="folder of engine-*.json and torch-*.json")
    parser.add_argument("--binary", type=Path, help="the vqa_bench that ran (to report its OpenBLAS)")
    args = parser.parse_args(argv)
    runs = load_runs(args.dir)
    cpu = any(paired_rounds(sides) for sides in runs.values())
    engine, torch = device_reports(args.dir)
    if not cpu and not engine and not torch:
        print(f"error: {args.dir}: no engine-*/torch-* CPU result pairs and no GPU results", file=sys.stderr)
        return 1
    if cpu:
        for line in environment(args.binary) + versions(runs):
            print(f"- {line}")
        print()
        print("\n".join(table(runs)))
        print()
        print("\n".join(memory_table(runs)))
    if engine or torch:
        if cpu:
            print()
        print("\n".join(device_section(engine, torch)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""PyTorch's scaled_dot_product_attention on CUDA: the library baseline of our fused attention kernel.

  python3 bench/sdpa_bench.py [--out sdpa.jsonl] [--types fp16,bf16,fp32] [--repeats 30] [--warmup 10]
  python3 bench/sdpa_bench.py --join attention_bench.json sdpa.jsonl    # "ours / SDPA" table, markdown

The shapes and the key padding are attention_bench's (bench/attention_bench.cpp, bench/bench_util.h): B = 1, 32,
256, H = 8, Dh = 64, (Lq, Lk) = (14, 14), (100, 100), (100, 14), (14, 100); batch b keeps its first Lk - r_b keys
with r_b from the same generator and seed, as a float additive mask [B, 1, 1, Lk] (0 = valid key, -inf = padding,
in the inputs' type) broadcast over heads and queries; scale 1/sqrt(Dh). Every backend (flash, efficient, cudnn,
math) is forced in turn with torch.nn.attention.sdpa_kernel; one that refuses the mask or the shape is reported
with its reason, and the fastest that ran is the baseline. Each backend is timed twice: eager calls (the median
of --repeats samples, a sample being CUDA events around --calls back-to-back calls, after --warmup calls: Python's
launch overhead included, as a PyTorch user pays it) and the same --calls calls captured once in a CUDA graph and
replayed (the GPU time alone). Each backend's output is also checked against the math backend in fp32
(max_abs_err), so a backend that ignored the mask would show.

Output: the environment and one table row per shape on stdout; with --out, JSON lines: {"kind": "environment",
...} first, then per shape {"kind": "sdpa", "type", "B", "H", "Lq", "Lk", "Dh", "backend", "us", "graph_backend",
"graph_us", "backends": {name: {"us", "graph_us", "max_abs_err"} or {"error"}}}.
Without torch, without scaled_dot_product_attention (torch < 2.0) or without a CUDA device it says so, writes the
environment line with the reason and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

HEADS = 8
HEAD_DIM = 64
BATCHES = (1, 32, 256)
LENGTHS = ((14, 14), (100, 100), (100, 14), (14, 100))  # (Lq, Lk)
TYPES = ("fp16", "bf16", "fp32")
BACKENDS = ("flash", "efficient", "cudnn", "math")
KEY_LENGTH_SEED = 2024  # bench_util.h: kKeyLengthSeed
MASK = (1 << 64) - 1


def next_random(state: int) -> tuple[int, int]:
    """bench_util.h's next_random: Knuth's MMIX LCG, top 31 bits. Returns (value, new state)."""
    state = (state * 6364136223846793005 + 1442695040888963407) & MASK
    return state >> 33, state


def key_lengths(batch: int, kv_len: int) -> list[int]:
    """bench_util.h's key_lengths: valid keys of each batch, Lk - (next_random() % ceil(Lk / 2))."""
    state = KEY_LENGTH_SEED
    spread = (kv_len + 1) // 2
    lengths = []
    for _ in range(batch):
        value, state = next_random(state)
        lengths.append(kv_len - value % spread)
    return lengths


# ---- the join with attention_bench (no torch needed) ----

ShapeKey = tuple[str, int, int, int]  # (type, B, Lq, Lk)


def attention_bench_rows(benchmark_json: dict[str, Any] | None) -> dict[ShapeKey, dict[str, float]]:
    """attention/<type>/B:../Lq:../Lk:.. rows of attention_bench's Google Benchmark JSON: fused µs and baseline µs."""
    rows: dict[ShapeKey, dict[str, float]] = {}
    for bench in (benchmark_json or {}).get("benchmarks", []):
        parts = str(bench.get("name", "")).split("/")
        if len(parts) < 3 or parts[0] != "attention" or bench.get("error_occurred") or "us" not in bench:
            continue
        args = dict(part.split(":", 1) for part in parts[2:] if ":" in part)
        try:
            key = (parts[1], int(args["B"]), int(args["Lq"]), int(args["Lk"]))
        except (KeyError, ValueError):
            continue
        rows[key] = {"us": float(bench["us"]), "baseline_us": float(bench.get("baseline_us", math.nan))}
    return rows


def join_attention(benchmark_json: dict[str, Any] | None, sdpa_lines: Iterable[dict[str, Any]] | None) -> list[dict]:
    """One row per shape present on either side: ours (fused), the unfused cuBLAS path, SDPA's fastest backend, and
    ours / SDPA (< 1: ours is faster). A side that is missing, or a shape that only one side has, leaves None."""
    ours = attention_bench_rows(benchmark_json)
    sdpa: dict[ShapeKey, dict[str, Any]] = {}
    for line in sdpa_lines or []:
        if line.get("kind") == "sdpa" and line.get("us") is not None:
            sdpa[(line["type"], int(line["B"]), int(line["Lq"]), int(line["Lk"]))] = line
    type_order = {name: i for i, name in enumerate(TYPES)}
    keys = sorted(set(ours) | set(sdpa), key=lambda k: (type_order.get(k[0], len(TYPES)), k[0], k[1], k[2], k[3]))
    rows = []
    for key in keys:
        mine = ours.get(key, {})
        theirs = sdpa.get(key, {})
        ours_us = mine.get("us")
        sdpa_us = theirs.get("us")
        graph_us = theirs.get("graph_us")
        rows.append({
            "type": key[0], "B": key[1], "Lq": key[2], "Lk": key[3],
            "ours_us": ours_us, "unfused_us": mine.get("baseline_us"),
            "sdpa_us": sdpa_us, "sdpa_backend": theirs.get("backend"),
            "sdpa_graph_us": graph_us, "sdpa_graph_backend": theirs.get("graph_backend"),
            "ours_over_sdpa": ours_us / sdpa_us if ours_us and sdpa_us else None,
            "ours_over_sdpa_graph": ours_us / graph_us if ours_us and graph_us else None,
        })
    return rows


def format_join(rows: list[dict]) -> str:
    """The joined rows as a markdown table; an empty join says which side is missing."""
    if not rows:
        return "no attention rows: neither attention_bench's JSON nor SDPA's lines had any\n"

    def cell(value: Any, digits: int = 1) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    def timed(us: float | None, backend: str | None) -> str:
        return f"{cell(us)} ({cell(backend)})" if us is not None else "—"

    lines = ["| type | B | Lq | Lk | ours µs | unfused µs | SDPA µs (backend) | SDPA graph µs (backend) "
             "| ours / SDPA | ours / SDPA graph |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        sdpa = timed(r["sdpa_us"], r["sdpa_backend"])
        graph = timed(r["sdpa_graph_us"], r["sdpa_graph_backend"])
        lines.append(f"| {r['type']} | {r['B']} | {r['Lq']} | {r['Lk']} | {cell(r['ours_us'])} | "
                     f"{cell(r['unfused_us'])} | {sdpa} | {graph} | {cell(r['ours_over_sdpa'], 2)} | "
                     f"{cell(r['ours_over_sdpa_graph'], 2)} |")
    return "\n".join(lines) + "\n"


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_json_lines(path: Path) -> list[dict[str, Any]] | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by a timeout
    return lines


# ---- the measurement (torch imported only here) ----

def backend_context(torch: Any, name: str) -> contextlib.AbstractContextManager | None:
    """A context that forces SDPA backend `name`, or None when this torch cannot force it."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel  # torch >= 2.3
    except ImportError:
        if name == "cudnn" or not hasattr(torch.backends.cuda, "sdp_kernel"):
            return None
        return torch.backends.cuda.sdp_kernel(enable_flash=name == "flash", enable_mem_efficient=name == "efficient",
                                              enable_math=name == "math")
    backend = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "cudnn": "CUDNN_ATTENTION",
               "math": "MATH"}[name]
    return sdpa_kernel(getattr(SDPBackend, backend)) if hasattr(SDPBackend, backend) else None


def median_us(torch: Any, call: Callable[[], Any], repeats: int, calls: int) -> float:
    """Median over `repeats` samples of the µs per call, CUDA events around `calls` calls of `call`."""
    start = torch.cuda.Event(enable_timing=True)
    stop = torch.cuda.Event(enable_timing=True)
    samples = []
    for _ in range(repeats):
        start.record()
        for _ in range(calls):
            call()
        stop.record()
        stop.synchronize()
        samples.append(start.elapsed_time(stop) * 1e3 / calls)
    return statistics.median(samples)


def graph_us(torch: Any, call: Callable[[], Any], args: argparse.Namespace) -> float:
    """µs per call with `args.calls` calls captured in one CUDA graph and replayed: the GPU time without Python's
    launch overhead, which dominates eager calls of the small shapes."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream, as capture requires
        for _ in range(3):
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(args.calls):
            call()
    graph.replay()
    torch.cuda.synchronize()
    return median_us(torch, graph.replay, args.repeats, 1) / args.calls


def first_line(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:limit]


def time_backend(torch: Any, name: str, call: Callable[[], Any], reference: Any, args: argparse.Namespace) -> dict:
    """One backend on one shape: {"us", "graph_us" or "graph_error", "max_abs_err"}, or {"error": why it refused}."""
    context = backend_context(torch, name)
    if context is None:
        return {"error": f"torch {torch.__version__} cannot select this backend"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with context:
                out = call()
                result: dict[str, Any] = {"max_abs_err": (out.float() - reference).abs().max().item()}
                for _ in range(args.warmup):
                    call()
                torch.cuda.synchronize()
                result["us"] = median_us(torch, call, args.repeats, args.calls)
                try:
                    result["graph_us"] = graph_us(torch, call, args)
                except RuntimeError as failure:  # capture is not supported by every backend and version
                    result["graph_error"] = first_line(str(failure))
            return result
        except (RuntimeError, NotImplementedError, ValueError) as refusal:
            # A forced backend that cannot run raises "No available kernel" and gives its reasons as warnings.
            reasons = [first_line(str(w.message)) for w in caught] or [first_line(str(refusal))]
            return {"error": "; ".join(dict.fromkeys(reasons))}


def fastest(results: dict[str, dict[str, Any]], field: str) -> tuple[str | None, float | None]:
    timed = {name: r[field] for name, r in results.items() if field in r}
    if not timed:
        return None, None
    best = min(timed, key=timed.__getitem__)
    return best, timed[best]


def run_shape(torch: Any, type_name: str, batch: int, q_len: int, kv_len: int, args: argparse.Namespace) -> dict:
    """Every backend on one shape. The row's backend and us are the fastest eager call; graph_backend and graph_us
    the fastest in graph replay. SDPA's default scale is 1/sqrt(Dh), the scale attention_bench uses."""
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[type_name]
    functional = torch.nn.functional
    generator = torch.Generator(device="cuda").manual_seed(batch * 1000003 + q_len * 1009 + kv_len)
    q = torch.randn(batch, HEADS, q_len, HEAD_DIM, device="cuda", dtype=dtype, generator=generator)
    k = torch.randn(batch, HEADS, kv_len, HEAD_DIM, device="cuda", dtype=dtype, generator=generator)
    v = torch.randn(batch, HEADS, kv_len, HEAD_DIM, device="cuda", dtype=dtype, generator=generator)
    valid = torch.tensor(key_lengths(batch, kv_len), device="cuda")
    padding = torch.arange(kv_len, device="cuda")[None, :] >= valid[:, None]  # [B, Lk], True = padded key
    # Mask rows 16-element aligned in memory (the efficient backend copies an unaligned mask on every call).
    aligned = -(-kv_len // 16) * 16
    mask = torch.zeros(batch, 1, 1, aligned, device="cuda", dtype=dtype)[..., :kv_len]
    mask.masked_fill_(padding[:, None, None, :], float("-inf"))

    def call() -> Any:
        return functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    with torch.no_grad():
        with backend_context(torch, "math") or contextlib.nullcontext():
            reference = functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask.float())
        results = {name: time_backend(torch, name, call, reference, args) for name in args.backends}
    backend, us = fastest(results, "us")
    graph_backend, graph = fastest(results, "graph_us")
    return {"kind": "sdpa", "type": type_name, "B": batch, "H": HEADS, "Lq": q_len, "Lk": kv_len, "Dh": HEAD_DIM,
            "backend": backend, "us": us, "graph_backend": graph_backend, "graph_us": graph, "backends": results}


def environment(torch: Any | None, reason: str | None) -> dict[str, Any]:
    env: dict[str, Any] = {"kind": "environment", "python": sys.version.split()[0]}
    if torch is not None:
        env.update(torch=torch.__version__, cuda=torch.version.cuda)
        if torch.cuda.is_available():
            env.update(device=torch.cuda.get_device_name(0), cudnn=torch.backends.cudnn.version(),
                       capability=".".join(map(str, torch.cuda.get_device_capability(0))))
    if reason:
        env["skipped"] = reason
    return env


def measure(args: argparse.Namespace) -> int:
    out = open(args.out, "w") if args.out else None  # noqa: SIM115 (written line by line, kept on a timeout)

    def emit(record: dict[str, Any]) -> None:
        if out:
            out.write(json.dumps(record) + "\n")
            out.flush()

    try:
        import torch
    except ImportError:
        torch = None
    reasons = []
    if torch is None:
        reasons.append("no torch")
    else:
        if not torch.cuda.is_available():
            reasons.append(f"no CUDA device (torch {torch.__version__}, built for CUDA {torch.version.cuda})")
        if not hasattr(torch.nn.functional, "scaled_dot_product_attention"):
            reasons.append(f"torch {torch.__version__} has no scaled_dot_product_attention (it came in 2.0)")
    env = environment(torch, "; ".join(reasons) or None)
    emit(env)
    if reasons:
        print(f"sdpa_bench: {'; '.join(reasons)}: nothing to measure")
        return 0
    print("sdpa_bench: " + ", ".join(f"{key} {value}" for key, value in env.items() if key != "kind"))

    print(f"{'type':5} {'B':>4} {'Lq':>4} {'Lk':>4}  " + "  ".join(f"{name:>10}" for name in args.backends)
          + "  fastest (eager µs; graph replay µs)")
    for type_name in args.types:
        for batch in BATCHES:
            for q_len, kv_len in LENGTHS:
                row = run_shape(torch, type_name, batch, q_len, kv_len, args)
                emit(row)
                cells = [f"{r['us']:10.1f}" if "us" in r else f"{'refused':>10}" for r in row["backends"].values()]
                best = f"{row['backend']} {row['us']:.1f}" if row["us"] is not None else "none ran"
                if row["graph_us"] is not None:
                    best += f"; {row['graph_backend']} {row['graph_us']:.1f}"
                print(f"{type_name:5} {batch:4} {q_len:4} {kv_len:4}  " + "  ".join(cells) + f"  {best}")
    refusals = {}
    if out:
        out.close()
        for line in read_json_lines(Path(args.out)) or []:
            for name, result in line.get("backends", {}).items():
                if "error" in result:
                    refusals.setdefault(name, result["error"])
    for name, reason in refusals.items():
        print(f"sdpa_bench: {name} refused at least one shape: {reason}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="JSON lines output file")
    parser.add_argument("--types", default=",".join(TYPES), help="element types, from fp16,bf16,fp32")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="backends to force, from " + ",".join(BACKENDS))
    parser.add_argument("--warmup", type=int, default=10, help="calls before timing")
    parser.add_argument("--repeats", type=int, default=30, help="timed samples; the median is reported")
    parser.add_argument("--calls", type=int, default=10, help="calls per timed sample")
    parser.add_argument("--join", nargs=2, metavar=("ATTENTION_JSON", "SDPA_JSONL"),
                        help="print the ours / SDPA table from attention_bench's JSON and this script's lines")
    args = parser.parse_args(argv)
    if args.join:
        rows = join_attention(read_json(Path(args.join[0])), read_json_lines(Path(args.join[1])))
        sys.stdout.write(format_join(rows))
        return 0
    args.types = [t for t in args.types.split(",") if t]
    args.backends = [b for b in args.backends.split(",") if b]
    unknown = [t for t in args.types if t not in TYPES] + [b for b in args.backends if b not in BACKENDS]
    if unknown:
        parser.error(f"unknown type or backend: {', '.join(unknown)}")
    return measure(args)


if __name__ == "__main__":
    sys.exit(main())

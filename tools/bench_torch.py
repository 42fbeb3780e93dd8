"""PyTorch baseline for vqa_bench: the reference model (tools/vqa_ref) on the same weights and the same work.

  python tools/bench_torch.py --model models/easy-vqa --batch 1,8,64,256 --threads 2 --json
  vqa_bench --model DIR --dump-inputs in.json ... && python tools/bench_torch.py --model DIR --inputs in.json
  python tools/bench_torch.py --model DIR --device cuda --precision fp16 --mode eager,sdpa,compile,compile-ro

A call of batch B answers B questions about ceil(B / questions-per-image) images, each image encoded once
(image_index), as Engine::answer() does. Timed per call, mirroring the engine call:
  1. tokenizing every question (vqa_ref.tokenizer.Tokenizer.encode) into ids [B, L] and lengths [B];
  2. preparing every distinct image: uint8 HWC pixels -> normalised float CHW (vqa_ref.preprocess.preprocess),
     or region features padded (pad_regions, with the box features), stacked into one batch, copied to the
     device in the model's precision;
  3. the forward pass, VQAModel(ids, lengths, images | regions [+ boxes5], image_index), eval, torch.no_grad;
  4. softmax (or sigmoid) and the top-1 answer string of each question (greedy decoding for generate heads).
A second figure, "from features", times step 3 alone on inputs already prepared on the device (CUDA events on
a GPU). Not timed: making the synthetic inputs, loading the model, the warm-up calls (the first of which is
reported as first_call_ms: for the compile modes it holds the compilation).

Modes: eager (the reference model as it is: explicit matmul + masked_fill + softmax, as openvqa), sdpa (the
same model with attention through F.scaled_dot_product_attention, vqa_ref.layers.set_sdpa), compile
(torch.compile(model), default mode) and compile-ro (mode="reduce-overhead": CUDA graphs). One compiled model
serves all batch sizes, as in a server: PyTorch recompiles when the shapes change (the second batch size makes
them dynamic). A mode this PyTorch or device lacks is reported as skipped with the reason, never a failure.
torch.set_num_threads(N) sets the intra-op threads; OpenBLAS (which torch's Linear layers call on Debian's CPU
build) keeps its own pool, so it is set to N too.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import json
import os
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_inputs import (BatchInputs, ImageSpec, batches_from_dump, make_batch, read_dump,  # noqa: E402
                          vocab_words, REGION_IMAGE_HEIGHT, REGION_IMAGE_WIDTH)
from export import load_model_dir  # noqa: E402
from vqa_ref.layers import MultiHeadAttention, sdpa_available, set_sdpa  # noqa: E402
from vqa_ref.model import VQAModel, answer_text  # noqa: E402
from vqa_ref.preprocess import pad_regions, preprocess  # noqa: E402
from vqa_ref.tokenizer import Tokenizer  # noqa: E402

REPORTED_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "CUDA_VISIBLE_DEVICES")
CONFIG_KEYS = ("BLAS", "LAPACK", "MKL", "OpenMP", "CPU capability", "USE_MKLDNN", "oneDNN", "MKL-DNN")
MODES = ("eager", "sdpa", "compile", "compile-ro")
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
SDPA_BACKENDS = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH")
COMPILE_WARMUP = 3  # compile-ro: the first call compiles, the next warm up and record the CUDA graphs
REASON_CHARS = 400


def loaded_openblas() -> ctypes.CDLL | None:
    """The OpenBLAS library this process has loaded (torch's BLAS on Debian), if any."""
    with open("/proc/self/maps", encoding="utf-8") as maps:
        paths = {line.split()[-1] for line in maps if "libopenblas" in line}
    for path in sorted(paths):
        if path.startswith("/"):
            try:
                lib = ctypes.CDLL(path)
                lib.openblas_get_corename.restype = ctypes.c_char_p
                return lib
            except (OSError, AttributeError):
                continue
    return None


def blas_info(lib: ctypes.CDLL | None) -> dict[str, Any]:
    if lib is None:
        return {"openblas": None}
    lib.openblas_get_config.restype = ctypes.c_char_p
    return {"openblas_core": lib.openblas_get_corename().decode(),
            "openblas_config": lib.openblas_get_config().decode(),
            "openblas_threads": lib.openblas_get_num_threads()}


def torch_config_lines() -> list[str]:
    """The lines of torch.__config__.show() and parallel_info() about BLAS, threads and CPU kernels."""
    lines = []
    for text in (torch.__config__.show(), torch.__config__.parallel_info()):
        for line in text.splitlines():
            stripped = line.strip(" -\t")
            if not stripped:
                continue
            if stripped.startswith("Build settings"):
                settings = [s.strip() for s in stripped.split(":", 1)[1].split(",")]
                stripped = "Build settings: " + ", ".join(s for s in settings if any(k in s for k in CONFIG_KEYS))
            relevant = any(k in stripped for k in CONFIG_KEYS) or "threads" in stripped or "backend" in stripped
            if relevant and stripped not in lines:
                lines.append(stripped)
    return lines


def cuda_info(device: torch.device) -> dict[str, Any] | None:
    """CUDA and cuDNN versions, the GPU, and the fp32 math settings that change GPU timings (TF32)."""
    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    return {"cuda_version": torch.version.cuda, "device_name": props.name,
            "capability": f"{props.major}.{props.minor}", "multiprocessors": props.multi_processor_count,
            "memory_gib": props.total_memory / 2**30, "cudnn_version": torch.backends.cudnn.version(),
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision()}


def short_reason(e: BaseException | str) -> str:
    text = e if isinstance(e, str) else f"{type(e).__name__}: {e}"
    text = " ".join(text.split())
    return text if len(text) <= REASON_CHARS else text[:REASON_CHARS - 3] + "..."


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TorchAnswerer:
    """One answer() call of the engine, in PyTorch; `forward` is the model or its compiled form."""

    def __init__(self, forward: Callable[..., Any], cfg: dict, vocab: dict[str, int], answers: list[str],
                 device: torch.device, dtype: torch.dtype, cuda_graphs: bool = False) -> None:
        self.forward = forward
        self.cfg = cfg
        self.tokenizer = Tokenizer(cfg, vocab)
        self.answers = answers
        self.spec = ImageSpec.from_config(cfg)
        self.device = device
        self.dtype = dtype
        # cudagraph trees reuse their output buffers; a new step tells them the previous outputs are consumed.
        self.mark_step = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None) \
            if cuda_graphs else None

    def image_tensors(self, work: BatchInputs) -> dict[str, torch.Tensor]:
        if self.spec.kind == "pixels":
            out = {"images": torch.stack([preprocess(im.pixels, self.cfg) for im in work.images])}
        else:
            padded = [pad_regions(im.features, self.spec.num_regions, im.boxes, REGION_IMAGE_WIDTH,
                                  REGION_IMAGE_HEIGHT)
                      if self.spec.boxes else pad_regions(im.features, self.spec.num_regions) for im in work.images]
            out = {"regions": torch.stack([p.features for p in padded])}
            if self.spec.boxes:
                out["boxes5"] = torch.stack([p.boxes5 for p in padded])
        return {k: v.to(self.device, self.dtype) for k, v in out.items()}

    def prepare(self, work: BatchInputs) -> dict[str, torch.Tensor]:
        """Steps 1-2: the model's inputs on the device."""
        encoded = [self.tokenizer.encode(q) for q in work.questions]
        return {"ids": torch.tensor([e[0] for e in encoded], dtype=torch.long).to(self.device),
                "lengths": torch.tensor([e[1] for e in encoded], dtype=torch.long).to(self.device),
                "image_index": torch.tensor(work.image_index, dtype=torch.long).to(self.device),
                **self.image_tensors(work)}

    def run_model(self, inputs: dict[str, torch.Tensor]) -> Any:
        """Step 3 alone."""
        if self.mark_step is not None:
            self.mark_step()
        with torch.no_grad():
            return self.forward(**inputs)

    def top1(self, out: Any) -> list[str]:
        head = self.cfg["head"]
        with torch.no_grad():
            if head["type"] == "classifier":
                probs = torch.sigmoid(out) if head["activation"] == "sigmoid" else torch.softmax(out, -1)
                return [self.answers[i] for i in probs.topk(1, dim=-1).indices[:, 0].tolist()]
            tokens, _ = out
            return [answer_text(row, self.answers, head["bos_id"], head["eos_id"]) for row in tokens.tolist()]

    def __call__(self, work: BatchInputs) -> list[str]:
        return self.top1(self.run_model(self.prepare(work)))


def timing(ms: list[float]) -> dict[str, float]:
    """Median and nearest-rank p90, as vqa_bench computes them."""
    s = sorted(ms)
    rank = max(-(-9 * len(s) // 10), 1)
    return {"median": statistics.median(s), "p90": s[rank - 1], "mean": statistics.fmean(s), "min": s[0],
            "max": s[-1]}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def timed_calls(call: Callable[[], Any], count: int, device: torch.device, events: bool) -> list[float]:
    """Milliseconds of `count` calls: wall clock around a synchronised call, or CUDA events on the stream."""
    ms = []
    for _ in range(count):
        if events and device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            end.synchronize()
            ms.append(start.elapsed_time(end))
        else:
            synchronize(device)
            t0 = time.perf_counter()
            call()
            synchronize(device)
            ms.append((time.perf_counter() - t0) * 1000.0)
    return ms


def run_batch(answer: TorchAnswerer, work: BatchInputs, warmup: int, iters: int) -> dict[str, Any]:
    """Whole calls, then the forward alone from prepared inputs; peak device memory over both."""
    device = answer.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    first_ms = timed_calls(lambda: answer(work), 1, device, events=False)[0] if warmup > 0 else None
    for _ in range(warmup - 1):
        answer(work)
    result: list[list[str]] = []
    call_ms = timed_calls(lambda: result.append(answer(work)), iters, device, events=False)
    inputs = answer.prepare(work)
    for _ in range(warmup):
        answer.run_model(inputs)
    forward_ms = timed_calls(lambda: answer.run_model(inputs), iters, device, events=True)
    call, forward = timing(call_ms), timing(forward_ms)
    return {"status": "ok", "batch": work.batch, "images": len(work.images), "latency_ms": call,
            "questions_per_s": work.batch / (call["median"] / 1000.0), "from_features_ms": forward,
            "from_features_questions_per_s": work.batch / (forward["median"] / 1000.0), "first_call_ms": first_ms,
            "peak_rss_mib": peak_rss_mib(),
            "peak_device_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
            "answers": result[-1]}


def run_unsupported(device: torch.device, precision: str) -> str | None:
    """Why nothing can run on this device in this precision, or None."""
    if device.type == "cuda" and not torch.cuda.is_available():
        return f"no CUDA device (torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'})"
    if device.type != "cuda" and precision != "fp32":
        return f"{precision} is measured on CUDA only (the engine's CPU backend is fp32)"
    return None


def mode_forward(mode: str, model: VQAModel, device: torch.device) -> tuple[Any, str | None]:
    """The callable that runs `model` in `mode`, or None and the reason this PyTorch or device cannot."""
    if mode == "sdpa" and not sdpa_available():
        return None, (f"torch {torch.__version__} has no torch.nn.functional.scaled_dot_product_attention "
                      "(PyTorch >= 2.0)")
    set_sdpa(model, mode == "sdpa")
    if mode in ("eager", "sdpa"):
        return model, None
    if not hasattr(torch, "compile"):
        return None, f"torch {torch.__version__} has no torch.compile (PyTorch >= 2.0)"
    if mode == "compile-ro" and device.type != "cuda":
        return None, "reduce-overhead records CUDA graphs: it needs a CUDA device"
    reset = getattr(getattr(torch, "compiler", None), "reset", None)
    if reset is None:  # PyTorch 2.0
        reset = importlib.import_module("torch._dynamo").reset
    reset()  # each compile mode starts from nothing compiled: its first_call_ms is a whole compilation
    return torch.compile(model, mode="reduce-overhead" if mode == "compile-ro" else None), None


def attention_shapes(model: VQAModel, call: Callable[[], Any]) -> list[dict[str, int]]:
    """The distinct (Lq, Lk) of the attention calls of one forward pass, with H and Dh."""
    seen: list[dict[str, int]] = []

    def hook(module: MultiHeadAttention, args: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        shape = {"heads": module.heads, "head_dim": args[0].shape[-1] // module.heads, "lq": args[0].shape[1],
                 "lk": args[1].shape[1]}
        if shape not in seen:
            seen.append(shape)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, MultiHeadAttention)]
    try:
        call()
    finally:
        for h in handles:
            h.remove()
    return seen


def sdpa_ops(call: Callable[[], Any]) -> list[str]:
    """The SDPA kernels (aten::_scaled_dot_product_*) that one call dispatches to."""
    from torch.profiler import ProfilerActivity, profile
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the profiler's notes about its own cycles
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            call()
    return sorted({e.name for e in prof.events()
                   if "scaled_dot_product" in e.name and e.name != "aten::scaled_dot_product_attention"})


def probe_sdpa(model: VQAModel, inputs: dict[str, torch.Tensor], device: torch.device) -> dict[str, Any]:
    """Which SDPA backend runs for the model's own shapes, dtype and masks: the kernels chosen by default, then
    each backend forced alone with torch.nn.attention.sdpa_kernel ("ok", or the reason it cannot run)."""
    if not sdpa_available():
        return {"status": "skipped", "reason": f"torch {torch.__version__} has no scaled_dot_product_attention"}

    def forward() -> None:
        with torch.no_grad():
            model(**inputs)
        synchronize(device)

    set_sdpa(model, True)
    try:
        report: dict[str, Any] = {"status": "ok", "shapes": attention_shapes(model, forward),
                                  "default_kernels": sdpa_ops(forward)}
        try:
            from torch.nn.attention import SDPBackend, sdpa_kernel
        except ImportError:
            report["backends"] = {"not probed": "torch.nn.attention.sdpa_kernel needs PyTorch >= 2.3"}
            return report
        backends: dict[str, str] = {}
        for name in SDPA_BACKENDS:
            backend = getattr(SDPBackend, name, None)
            if backend is None:
                backends[name.lower()] = f"not in torch {torch.__version__}"
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    with sdpa_kernel(backend):
                        forward()
                    backends[name.lower()] = "ok"
                except Exception as e:  # noqa: BLE001 - a backend that cannot run, for any reason, is the finding
                    why = "; ".join(dict.fromkeys(str(w.message).strip() for w in caught))
                    backends[name.lower()] = short_reason(f"fails: {why or e}")
        report["backends"] = backends
        return report
    except Exception as e:  # noqa: BLE001 - the probe informs; the measurements go on without it
        return {"status": "error", "reason": short_reason(e)}
    finally:
        set_sdpa(model, False)


def parse_batches(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints >= 1, got {text!r}")
    return values


def parse_modes(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in MODES]
    if not values or bad:
        raise argparse.ArgumentTypeError(f"expected comma-separated modes of {', '.join(MODES)}, got {text!r}")
    return list(dict.fromkeys(values))


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(report: dict[str, Any]) -> None:
    m, t = report["model"], report["torch"]
    print(f"bench_torch (torch {t['version']}): {m['name']} ({m['image_encoder']} / {m['text_encoder']}"
          f" / {m['fusion']} / {m['head']}, {m['parameters']} parameters)")
    print(f"device {report['device']}, precision {report['precision']}, threads {report['threads']}, "
          f"{report['questions_per_image']} questions per image, warmup {report['warmup']}, iters {report['iters']}, "
          f"load {report['load_ms']:.1f} ms")
    if report["cuda"] is not None:
        c = report["cuda"]
        print(f"  {c['device_name']} (sm {c['capability']}, {c['multiprocessors']} SMs), CUDA {c['cuda_version']}, "
              f"cuDNN {c['cudnn_version']}, TF32 matmul {c['tf32_matmul']}, TF32 cuDNN {c['tf32_cudnn']}")
    sdpa = report["sdpa"]
    if sdpa["status"] == "ok":
        print(f"  SDPA default kernels: {', '.join(sdpa['default_kernels']) or 'none'}; forced: "
              + "; ".join(f"{k}: {v}" for k, v in sdpa["backends"].items()))
    else:
        print(f"  SDPA probe {sdpa['status']}: {sdpa['reason']}")
    for line in t["config"]:
        print(f"  {line}")
    print(f"  OpenBLAS: {t['blas']}")
    for s in report["skipped"]:
        print(f"{s['mode']}: skipped: {s['reason']}")
    memory = "peak dev MiB" if report["device"] == "cuda" else "peak RSS MiB"
    print(f"{'mode':>10} {'batch':>6} {'images':>6} {'median ms':>11} {'p90 ms':>10} {'questions/s':>12} "
          f"{'feat. med ms':>12} {'feat. p90 ms':>12} {'first ms':>10} {memory:>13}")
    for r in report["results"]:
        if r["status"] != "ok":
            print(f"{r['mode']:>10} {r['batch']:>6} {r['status']}: {r['reason']}")
            continue
        mem = r["peak_device_mib"] if report["device"] == "cuda" else r["peak_rss_mib"]
        print(f"{r['mode']:>10} {r['batch']:>6} {r['images']:>6} {r['latency_ms']['median']:>11.3f} "
              f"{r['latency_ms']['p90']:>10.3f} {r['questions_per_s']:>12.1f} {r['from_features_ms']['median']:>12.3f} "
              f"{r['from_features_ms']['p90']:>12.3f} {fmt(r['first_call_ms'], '.1f'):>10} {fmt(mem, '.1f'):>13}")


def write_report(report: dict[str, Any], path: Path | None) -> None:
    """--output: the report so far, replaced whole (a run stopped by a timeout keeps what it measured)."""
    if path is not None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model directory")
    parser.add_argument("--inputs", type=Path, help="vqa_bench --dump-inputs file: run exactly those questions")
    parser.add_argument("--batch", type=parse_batches, help="questions per call, comma-separated "
                        "(default: 1,8,64,256, or every batch of --inputs)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the model runs (default cpu)")
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                        help="weights and image inputs converted to this type (model.half() etc.; CUDA only "
                        "below fp32; default fp32)")
    parser.add_argument("--mode", type=parse_modes, default=["eager"],
                        help=f"comma-separated, run in this order: {', '.join(MODES)} (default eager)")
    parser.add_argument("--questions-per-image", type=int, default=4, help="without --inputs (default 4)")
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenBLAS threads (default 1)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per batch size (default 3; the "
                        f"compile modes take at least {COMPILE_WARMUP})")
    parser.add_argument("--iters", type=int, default=20, help="timed calls per batch size (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="without --inputs: seed of the inputs (default 0)")
    parser.add_argument("--budget-s", type=float, help="start no batch size after this many seconds of "
                        "measuring; the rest are reported as skipped")
    parser.add_argument("--output", type=Path, help="also write the JSON here, after every batch size")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.iters < 1 or args.warmup < 0 or args.questions_per_image < 1:
        parser.error("expected --threads >= 1, --iters >= 1, --warmup >= 0, --questions-per-image >= 1")

    torch.set_num_threads(args.threads)
    openblas = loaded_openblas()
    if openblas is not None:
        openblas.openblas_set_num_threads(args.threads)
    device = torch.device(args.device)
    unsupported = run_unsupported(device, args.precision)
    skipped = [{"mode": m, "reason": unsupported} for m in args.mode] if unsupported else []
    dtype = PRECISIONS[args.precision]
    start = time.perf_counter()
    model, cfg, vocab, answers = load_model_dir(args.model)
    if unsupported is None:
        model = model.to(device).to(dtype)
        synchronize(device)
    load_ms = (time.perf_counter() - start) * 1000.0
    if args.inputs is not None:
        dump = read_dump(args.inputs)
        work = batches_from_dump(dump, args.batch)
        seed, per_image = dump["seed"], dump["questions_per_image"]
    else:
        words = vocab_words(vocab, cfg)
        max_length = cfg["text"]["tokenizer"]["max_length"]
        seed, per_image = args.seed, args.questions_per_image
        work = [make_batch(ImageSpec.from_config(cfg), words, max_length, seed, b, per_image)
                for b in (args.batch or [1, 8, 64, 256])]

    results: list[dict[str, Any]] = []
    report = {
        "tool": "bench_torch",
        "model": {"path": str(args.model), "name": cfg["name"], "image_encoder": cfg["image"]["encoder"],
                  "text_encoder": cfg["text"]["encoder"], "fusion": cfg["fusion"]["type"],
                  "head": cfg["head"]["type"], "hidden": cfg["fusion"]["hidden"], "heads": cfg["fusion"]["heads"],
                  "layers": cfg["fusion"]["layers"], "parameters": sum(p.numel() for p in model.parameters())},
        "device": args.device,
        "precision": args.precision,
        "modes": args.mode,
        "threads": args.threads,
        "torch": {"version": torch.__version__, "num_threads": torch.get_num_threads(),
                  "num_interop_threads": torch.get_num_interop_threads(), "config": torch_config_lines(),
                  "blas": blas_info(openblas)},
        "cuda": cuda_info(device) if unsupported is None else None,
        "sdpa": {"status": "skipped", "reason": unsupported} if unsupported else None,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "env": {k: os.environ.get(k) for k in REPORTED_ENV},
        "questions_per_image": per_image,
        "warmup": args.warmup,
        "iters": args.iters,
        "seed": seed,
        "budget_s": args.budget_s,
        "inputs": str(args.inputs) if args.inputs is not None else None,
        "timed": "tokenize, preprocess/pad + stack + copy to the device, VQAModel forward (no_grad), "
                 "softmax/sigmoid, top-1 answers",
        "timed_from_features": "VQAModel forward (no_grad) on inputs already on the device",
        "load_ms": load_ms,
        "skipped": skipped,
        "results": results,
    }
    if unsupported is None:
        probe = TorchAnswerer(model, cfg, vocab, answers, device, dtype)
        report["sdpa"] = probe_sdpa(model, probe.prepare(work[0]), device)
    measuring = time.monotonic()
    for mode in args.mode if unsupported is None else []:
        forward, reason = mode_forward(mode, model, device)
        if forward is None:
            skipped.append({"mode": mode, "reason": reason})
            continue
        answer = TorchAnswerer(forward, cfg, vocab, answers, device, dtype, cuda_graphs=mode == "compile-ro")
        warmup = max(args.warmup, COMPILE_WARMUP) if mode.startswith("compile") else args.warmup
        for w in work:
            if args.budget_s is not None and time.monotonic() - measuring > args.budget_s:
                results.append({"mode": mode, "status": "skipped", "batch": w.batch,
                                "reason": f"the time budget of {args.budget_s:g} s was spent"})
                continue
            try:
                results.append({"mode": mode, **run_batch(answer, w, warmup, args.iters)})
            except Exception as e:  # noqa: BLE001 - one failed mode or batch size must not lose the others
                results.append({"mode": mode, "status": "error", "batch": w.batch, "reason": short_reason(e)})
            report["peak_rss_mib"] = peak_rss_mib()
            write_report(report, args.output)
    set_sdpa(model, False)
    report["peak_rss_mib"] = peak_rss_mib()
    write_report(report, args.output)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

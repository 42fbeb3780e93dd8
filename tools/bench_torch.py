"""PyTorch baseline for vqa_bench: the reference model (tools/vqa_ref) on the same weights and the same work.

  python tools/bench_torch.py --model models/easy-vqa --batch 1,8,64,256 --threads 2 --json
  vqa_bench --model DIR --dump-inputs in.json ... && python tools/bench_torch.py --model DIR --inputs in.json

A call of batch B answers B questions about ceil(B / questions-per-image) images, each image encoded once
(image_index), as Engine::answer() does. Timed per call, mirroring the engine call:
  1. tokenizing every question (vqa_ref.tokenizer.Tokenizer.encode) into ids [B, L] and lengths [B];
  2. preparing every distinct image: uint8 HWC pixels -> normalised float CHW (vqa_ref.preprocess.preprocess),
     or region features padded (pad_regions, with the box features), stacked into one batch;
  3. the forward pass, VQAModel(ids, lengths, images | regions [+ boxes5], image_index), eval, torch.no_grad;
  4. softmax (or sigmoid) and the top-1 answer string of each question (greedy decoding for generate heads).
Not timed: making the synthetic inputs, loading the model. torch.set_num_threads(N) sets the intra-op
threads; OpenBLAS (which torch's Linear layers call here) keeps its own pool, so it is set to N too.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_inputs import (BatchInputs, ImageSpec, batches_from_dump, make_batch, read_dump,  # noqa: E402
                          vocab_words, REGION_IMAGE_HEIGHT, REGION_IMAGE_WIDTH)
from export import load_model_dir  # noqa: E402
from vqa_ref.model import VQAModel, answer_text  # noqa: E402
from vqa_ref.preprocess import pad_regions, preprocess  # noqa: E402
from vqa_ref.tokenizer import Tokenizer  # noqa: E402

REPORTED_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
CONFIG_KEYS = ("BLAS", "LAPACK", "MKL", "OpenMP", "CPU capability", "USE_MKLDNN", "oneDNN", "MKL-DNN")


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


class TorchAnswerer:
    """One answer() call of the engine, in PyTorch."""

    def __init__(self, model: VQAModel, cfg: dict, vocab: dict[str, int], answers: list[str]) -> None:
        self.model = model.eval()
        self.cfg = cfg
        self.tokenizer = Tokenizer(cfg, vocab)
        self.answers = answers
        self.spec = ImageSpec.from_config(cfg)

    def image_tensors(self, work: BatchInputs) -> dict[str, torch.Tensor]:
        if self.spec.kind == "pixels":
            return {"images": torch.stack([preprocess(im.pixels, self.cfg) for im in work.images])}
        padded = [pad_regions(im.features, self.spec.num_regions, im.boxes, REGION_IMAGE_WIDTH, REGION_IMAGE_HEIGHT)
                  if self.spec.boxes else pad_regions(im.features, self.spec.num_regions) for im in work.images]
        out = {"regions": torch.stack([p.features for p in padded])}
        if self.spec.boxes:
            out["boxes5"] = torch.stack([p.boxes5 for p in padded])
        return out

    def __call__(self, work: BatchInputs) -> list[str]:
        encoded = [self.tokenizer.encode(q) for q in work.questions]
        ids = torch.tensor([e[0] for e in encoded], dtype=torch.long)
        lengths = torch.tensor([e[1] for e in encoded], dtype=torch.long)
        image_index = torch.tensor(work.image_index, dtype=torch.long)
        with torch.no_grad():
            out = self.model(ids, lengths, image_index=image_index, **self.image_tensors(work))
            if self.model.head_type == "classifier":
                probs = torch.sigmoid(out) if self.cfg["head"]["activation"] == "sigmoid" else torch.softmax(out, -1)
                top = probs.topk(1, dim=-1).indices[:, 0].tolist()
                return [self.answers[i] for i in top]
            head = self.cfg["head"]
            tokens, _ = out
            return [answer_text(row, self.answers, head["bos_id"], head["eos_id"]) for row in tokens.tolist()]


def timing(ms: list[float]) -> dict[str, float]:
    """Median and nearest-rank p90, as vqa_bench computes them."""
    s = sorted(ms)
    rank = max(-(-9 * len(s) // 10), 1)
    return {"median": statistics.median(s), "p90": s[rank - 1], "mean": statistics.fmean(s), "min": s[0],
            "max": s[-1]}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_batch(answer: TorchAnswerer, work: BatchInputs, warmup: int, iters: int) -> dict[str, Any]:
    for _ in range(warmup):
        answer(work)
    ms = []
    result: list[str] = []
    for _ in range(iters):
        start = time.perf_counter()
        result = answer(work)
        ms.append((time.perf_counter() - start) * 1000.0)
    t = timing(ms)
    return {"batch": work.batch, "images": len(work.images), "latency_ms": t,
            "questions_per_s": work.batch / (t["median"] / 1000.0), "peak_rss_mib": peak_rss_mib(),
            "answers": result}


def parse_batches(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints >= 1, got {text!r}")
    return values


def print_table(report: dict[str, Any]) -> None:
    m = report["model"]
    print(f"bench_torch (torch {report['torch']['version']}): {m['name']} ({m['image_encoder']} / {m['text_encoder']}"
          f" / {m['fusion']} / {m['head']}, {m['parameters']} parameters)")
    print(f"threads {report['threads']}, {report['questions_per_image']} questions per image, warmup "
          f"{report['warmup']}, iters {report['iters']}, load {report['load_ms']:.1f} ms")
    for line in report["torch"]["config"]:
        print(f"  {line}")
    print(f"  OpenBLAS: {report['torch']['blas']}")
    print(f"{'batch':>7} {'images':>7} {'median ms':>12} {'p90 ms':>12} {'questions/s':>14} {'peak RSS MiB':>14}")
    for r in report["results"]:
        print(f"{r['batch']:>7} {r['images']:>7} {r['latency_ms']['median']:>12.3f} {r['latency_ms']['p90']:>12.3f} "
              f"{r['questions_per_s']:>14.1f} {r['peak_rss_mib']:>14.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model directory")
    parser.add_argument("--inputs", type=Path, help="vqa_bench --dump-inputs file: run exactly those questions")
    parser.add_argument("--batch", type=parse_batches, help="questions per call, comma-separated "
                        "(default: 1,8,64,256, or every batch of --inputs)")
    parser.add_argument("--questions-per-image", type=int, default=4, help="without --inputs (default 4)")
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenBLAS threads (default 1)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per batch size (default 3)")
    parser.add_argument("--iters", type=int, default=20, help="timed calls per batch size (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="without --inputs: seed of the inputs (default 0)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.iters < 1 or args.warmup < 0 or args.questions_per_image < 1:
        parser.error("expected --threads >= 1, --iters >= 1, --warmup >= 0, --questions-per-image >= 1")

    torch.set_num_threads(args.threads)
    openblas = loaded_openblas()
    if openblas is not None:
        openblas.openblas_set_num_threads(args.threads)
    start = time.perf_counter()
    model, cfg, vocab, answers = load_model_dir(args.model)
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

    answer = TorchAnswerer(model, cfg, vocab, answers)
    results = [run_batch(answer, w, args.warmup, args.iters) for w in work]
    report = {
        "tool": "bench_torch",
        "model": {"path": str(args.model), "name": cfg["name"], "image_encoder": cfg["image"]["encoder"],
                  "text_encoder": cfg["text"]["encoder"], "fusion": cfg["fusion"]["type"],
                  "head": cfg["head"]["type"], "hidden": cfg["fusion"]["hidden"], "heads": cfg["fusion"]["heads"],
                  "layers": cfg["fusion"]["layers"], "parameters": sum(p.numel() for p in model.parameters())},
        "device": "cpu",
        "threads": args.threads,
        "torch": {"version": torch.__version__, "num_threads": torch.get_num_threads(),
                  "num_interop_threads": torch.get_num_interop_threads(), "config": torch_config_lines(),
                  "blas": blas_info(openblas)},
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "env": {k: os.environ.get(k) for k in REPORTED_ENV},
        "questions_per_image": per_image,
        "warmup": args.warmup,
        "iters": args.iters,
        "seed": seed,
        "inputs": str(args.inputs) if args.inputs is not None else None,
        "timed": "tokenize, preprocess/pad + stack, VQAModel forward (no_grad), softmax/sigmoid, top-1 answers",
        "load_ms": load_ms,
        "results": results,
        "peak_rss_mib": peak_rss_mib(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""bench_report.py joining made-up vqa_bench and bench_torch.py results: the GPU tables and targets, the CPU pairs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import bench_report


def timing(median: float) -> dict[str, float]:
    return {"median": median, "p90": median * 1.1, "mean": median, "min": median * 0.9, "max": median * 1.2}


def row(batch: int, call_ms: float, features_ms: float | None = None, answer: str = "a",
        mode: str | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"batch": batch, "images": (batch + 3) // 4, "latency_ms": timing(call_ms),
                         "questions_per_s": batch / call_ms * 1000, "peak_rss_mib": 300.0, "answers": [answer] * batch}
    if features_ms is not None:
        r["from_features_ms"] = timing(features_ms)
    if mode is not None:
        r.update({"mode": mode, "status": "ok", "first_call_ms": 5.0, "peak_device_mib": 123.4})
    return r


def engine_report(device: str, precision: str | None, results: list[dict[str, Any]], name: str = "m") -> dict:
    report = {"tool": "vqa_bench", "version": "0.1.0", "model": {"name": name}, "device": device, "threads": 1,
              "results": results, "peak_rss_mib": 300.0, "load_ms": 10.0}
    if precision is not None:
        report["precision"] = precision
    return report


def torch_report(device: str, precision: str, results: list[dict[str, Any]], skipped: list[dict[str, str]],
                 name: str = "m") -> dict:
    return {"tool": "bench_torch", "model": {"name": name}, "device": device, "precision": precision,
            "threads": 1, "python": "3.12.3", "numpy": "2.0",
            "torch": {"version": "2.11.0", "config": ["OpenMP 201511"], "blas": {"openblas_core": "Haswell"}},
            "cuda": {"cuda_version": "13.0", "device_name": "NVIDIA H200", "capability": "9.0",
                     "multiprocessors": 132, "cudnn_version": 91900, "tf32_matmul": False, "tf32_cudnn": True},
            "sdpa": {"status": "ok", "default_kernels": ["aten::_scaled_dot_product_efficient_attention"],
                     "backends": {"flash_attention": "fails: attn_mask", "math": "ok"}},
            "skipped": skipped, "results": results, "peak_rss_mib": 900.0, "load_ms": 50.0}


def write(directory: Path, name: str, report: dict) -> None:
    (directory / name).write_text(json.dumps(report), encoding="utf-8")


@pytest.fixture
def gpu_dir(tmp_path: Path) -> Path:
    write(tmp_path, "cuda-engine-m-fp16.json", engine_report("cuda", "fp16", [row(1, 1.0, 0.2), row(256, 10.0, 8.0)]))
    torch_rows = [row(1, 12.0, 1.6, answer="b", mode="eager"), row(256, 30.0, 16.0, mode="eager"),
                  row(1, 1.5, 0.5, mode="compile-ro"),
                  {"mode": "compile-ro", "status": "error", "batch": 256, "reason": "OutOfMemoryError: CUDA"},
                  row(1, 2.0, 1.0, mode="compile"), row(256, 12.0, 12.0, mode="compile")]
    write(tmp_path, "cuda-torch-m-fp16.json", torch_report("cuda", "fp16", torch_rows, [
        {"mode": "sdpa", "reason": "torch 1.13 has no torch.nn.functional.scaled_dot_product_attention"}]))
    # vqa_bench without a from-features figure, and no PyTorch run for fp32
    write(tmp_path, "cuda-engine-m-fp32.json", engine_report("cuda", "fp32", [row(1, 2.0), row(256, 20.0)]))
    (tmp_path / "truncated.json").write_text('{"tool": "vqa_bench", ')
    write(tmp_path, "inputs-m.json", {"format": "vqa_bench-inputs/1", "batches": []})
    return tmp_path


def test_reports_are_joined_by_model_device_precision(gpu_dir: Path) -> None:
    engine, torch = bench_report.device_reports(gpu_dir)
    assert sorted(engine) == [("m", "cuda", "fp16"), ("m", "cuda", "fp32")]
    assert sorted(torch) == [("m", "cuda", "fp16")]


def test_ratio_tables(gpu_dir: Path) -> None:
    engine, torch = bench_report.device_reports(gpu_dir)
    key = ("m", "cuda", "fp16")
    call = bench_report.ratio_table(engine[key], torch[key], "latency_ms")
    # batch, engine ms, engine q/s, eager, sdpa, compile, compile-ro, same top-1 as eager
    assert call[2] == "| 1 | 1.000 | 1000 | 12.000 (12.00x) | - | 2.000 (2.00x) | 1.500 (1.50x) | 0/1 |"
    assert call[3] == "| 256 | 10.000 | 25600 | 30.000 (3.00x) | - | 12.000 (1.20x) | error | 256/256 |"
    features = bench_report.ratio_table(engine[key], torch[key], "from_features_ms")
    assert features[2] == "| 1 | 0.200 | 5000 | 1.600 (8.00x) | - | 1.000 (5.00x) | 0.500 (2.50x) | 0/1 |"
    alone = bench_report.ratio_table(engine[("m", "cuda", "fp32")], None, "from_features_ms")
    assert alone[2] == "| 1 | - | - | - | - | - | - | n/a |"


def test_targets(gpu_dir: Path) -> None:
    engine, torch = bench_report.device_reports(gpu_dir)
    key = ("m", "cuda", "fp16")
    rows = bench_report.target_rows("m", "fp16", engine[key], torch[key])
    expected = [
        "| m | fp16 | batch 1 latency <= 0.25 ms | from features | 0.200 ms | - | - | yes |",
        "| m | fp16 | batch 1 latency >= 10.0x eager | call | 1.000 ms | 12.000 ms | 12.00x | yes |",
        "| m | fp16 | batch 1 latency >= 10.0x eager | from features | 0.200 ms | 1.600 ms | 8.00x | **no** |",
        "| m | fp16 | batch 1 latency >= 2.0x compile-ro | call | 1.000 ms | 1.500 ms | 1.50x | **no** |",
        "| m | fp16 | batch 1 latency >= 2.0x compile-ro | from features | 0.200 ms | 0.500 ms | 2.50x | yes |",
        "| m | fp16 | batch 256 throughput >= 2.5x eager | call | 10.000 ms | 30.000 ms | 3.00x | yes |",
        "| m | fp16 | batch 256 throughput >= 2.5x eager | from features | 8.000 ms | 16.000 ms | 2.00x | **no** |",
        "| m | fp16 | batch 256 throughput >= 1.3x compile | call | 10.000 ms | 12.000 ms | 1.20x | **no** |",
        "| m | fp16 | batch 256 throughput >= 1.3x compile | from features | 8.000 ms | 12.000 ms | 1.50x | yes |",
    ]
    assert rows == expected
    missing = bench_report.target_rows("m", "fp32", engine[("m", "cuda", "fp32")], None)
    assert missing[0].endswith("| from features | n/a | - | - | n/a |")
    assert all(r.endswith("| n/a |") for r in missing)


def test_gpu_report(gpu_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_report.main(["--dir", str(gpu_dir)]) == 0
    out = capsys.readouterr().out
    assert "### m, cuda, fp16" in out and "### m, cuda, fp32" in out and "### Targets" in out
    assert "- sdpa: skipped: torch 1.13 has no" in out
    assert "- compile-ro batch 256: error: OutOfMemoryError: CUDA" in out
    assert "No vqa_bench result" not in out and "NVIDIA H200 (sm 9.0, 132 SMs)" in out
    assert "SDPA for m fp16: default kernels aten::_scaled_dot_product_efficient_attention" in out
    assert "| compile-ro | 1 | 5.0 | 123.4 |" in out


def test_cpu_pairs_compare_eager_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "engine-m-t1.json", engine_report("cpu", None, [row(1, 4.0), row(8, 8.0)]))
    write(tmp_path, "torch-m-t1.json", torch_report("cpu", "fp32", [
        row(1, 8.0, 7.0, mode="eager"), row(8, 32.0, 30.0, mode="eager"), row(1, 1.0, 1.0, mode="sdpa"),
        {"mode": "sdpa", "status": "error", "batch": 8, "reason": "x"}], []))
    rows = bench_report.table(bench_report.load_runs(tmp_path))
    assert [r.split(" | ")[2] for r in rows[2:]] == ["1", "8"]
    assert [r.split(" | ")[8] for r in rows[2:]] == ["**0.50**", "**0.25**"]  # engine/torch time against eager
    assert bench_report.device_reports(tmp_path) == ({}, {})
    assert bench_report.main(["--dir", str(tmp_path)]) == 0
    assert "## Engine against PyTorch on the GPU" not in capsys.readouterr().out


def test_nothing_to_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "cpu-smoke-torch.json", torch_report("cpu", "fp32", [row(1, 1.0, 1.0, mode="eager")], []))
    assert bench_report.main(["--dir", str(tmp_path)]) == 1
    assert "no engine-*/torch-* CPU result pairs and no GPU results" in capsys.readouterr().err

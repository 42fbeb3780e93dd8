"""bench_torch.py's devices, precisions and modes on the CPU; the SDPA switch of vqa_ref.layers; the safetensors
reader that stands in for the package; scripts/bench_gpu.sh without a GPU."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, TOOLS, tiny_config
from test_model import ANSWERS, VARIANTS, VOCAB, make_inputs
from vqa_ref import layers
from vqa_ref.layers import set_sdpa, sdpa_available
from vqa_ref.model import VQAModel
from vqa_ref.safetensors_io import OwnSafetensorError, SafetensorsFile, write_safetensors

import bench_torch

GOLDENS = REPO / "tests" / "goldens"
REGIONS_MODEL = GOLDENS / "regions_box_lstm_mcan_openvqa"
NO_SDPA = f"torch {torch.__version__} has no F.scaled_dot_product_attention (PyTorch >= 2.0)"


def documented_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
                    dropout_p: float = 0.0) -> torch.Tensor:
    """F.scaled_dot_product_attention as PyTorch documents it, boolean mask True = takes part; a query with
    no key taking part comes out NaN, as from the math backend."""
    assert dropout_p == 0.0 and (attn_mask is None or attn_mask.dtype == torch.bool)
    scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def activations(model: VQAModel, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return model(**inputs, return_activations=True)


def assert_same_activations(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]) -> None:
    assert expected.keys() == actual.keys()
    for name, value in expected.items():
        if value.is_floating_point():
            assert torch.isfinite(actual[name]).all(), name
            torch.testing.assert_close(actual[name], value, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")
        else:
            assert torch.equal(actual[name], value), name


def sdpa_case(image: str, text: str, fusion: str, head: str, masked_row: str) -> tuple[VQAModel, dict]:
    cfg = tiny_config(image, text, fusion, head, fusion__masked_row=masked_row)
    model = VQAModel(cfg, VOCAB, ANSWERS)
    # Length 0 and an image of zero regions: queries whose keys are all masked, in both attention directions.
    return model, make_inputs(cfg, lengths=[6, 1, 0, 6])


@pytest.mark.parametrize("masked_row", ["zero", "uniform"])
@pytest.mark.parametrize("image,text,fusion,head", VARIANTS)
def test_sdpa_switch_gives_the_default_activations(image: str, text: str, fusion: str, head: str,
                                                   masked_row: str) -> None:
    if not sdpa_available():
        pytest.skip(NO_SDPA)
    model, inputs = sdpa_case(image, text, fusion, head, masked_row)
    expected = activations(model, inputs)
    assert set_sdpa(model, True) > 0
    assert_same_activations(expected, activations(model, inputs))
    set_sdpa(model, False)
    assert_same_activations(expected, activations(model, inputs))


@pytest.mark.parametrize("masked_row", ["zero", "uniform"])
@pytest.mark.parametrize("fusion", ["mcan", "simple"])
def test_sdpa_masks_against_the_documented_semantics(fusion: str, masked_row: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The mask inversion and the fully-masked-row rule, on any PyTorch: SDPA replaced by its documented
    definition (which gives NaN for a query without keys, so a missing fix-up fails here)."""
    model, inputs = sdpa_case("regions", "transformer", fusion, "classifier", masked_row)
    expected = activations(model, inputs)
    calls = []

    def stand_in(*args: torch.Tensor, **kwargs: object) -> torch.Tensor:
        calls.append(args[0].shape)
        return documented_sdpa(*args, **kwargs)

    monkeypatch.setattr(layers, "sdpa_available", lambda: True)
    monkeypatch.setattr(F, "scaled_dot_product_attention", stand_in, raising=False)
    count = set_sdpa(model, True)
    assert_same_activations(expected, activations(model, inputs))
    assert count == sum(isinstance(m, layers.MultiHeadAttention) for m in model.modules()) and len(calls) >= count


def test_sdpa_switch_without_sdpa() -> None:
    model, _ = sdpa_case("regions", "lstm", "mcan", "classifier", "zero")
    assert set_sdpa(model, False) == 3  # one layer each: text self-attention, image self- and cross-attention
    if sdpa_available():
        pytest.skip(f"torch {torch.__version__} has SDPA: the error for PyTorch < 2.0 cannot happen here")
    with pytest.raises(RuntimeError, match="scaled_dot_product_attention"):
        set_sdpa(model, True)
    assert not any(getattr(m, "use_sdpa", False) for m in model.modules())


def run_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    assert bench_torch.main(args + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_modes_on_the_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "torch.json"
    report = run_json(["--model", str(REGIONS_MODEL), "--batch", "1,5", "--iters", "2", "--warmup", "1",
                       "--mode", "eager,sdpa,compile-ro", "--output", str(output)], capsys)
    assert json.loads(output.read_text()) == report
    assert report["device"] == "cpu" and report["precision"] == "fp32" and report["cuda"] is None
    assert report["modes"] == ["eager", "sdpa", "compile-ro"]
    rows = {(r["mode"], r["batch"]): r for r in report["results"]}
    skipped = {s["mode"]: s["reason"] for s in report["skipped"]}
    assert "compile-ro" in skipped and ("CUDA" in skipped["compile-ro"] or "torch.compile" in skipped["compile-ro"])
    for batch in (1, 5):
        eager = rows["eager", batch]
        assert eager["status"] == "ok" and len(eager["answers"]) == batch and eager["first_call_ms"] > 0
        for field in ("latency_ms", "from_features_ms"):
            assert 0 < eager[field]["min"] <= eager[field]["median"] <= eager[field]["p90"] <= eager[field]["max"]
        assert eager["from_features_questions_per_s"] == pytest.approx(batch * 1000 / eager["from_features_ms"]
                                                                       ["median"])
        assert eager["peak_device_mib"] is None
        if sdpa_available():
            assert rows["sdpa", batch]["answers"] == eager["answers"]
    if sdpa_available():
        assert report["sdpa"]["status"] == "ok" and report["sdpa"]["backends"]["math"] == "ok"
        assert {"heads": 4, "head_dim": 6, "lq": 6, "lk": 10} in report["sdpa"]["shapes"]
    else:
        assert "scaled_dot_product_attention" in skipped["sdpa"] and ("sdpa", 1) not in rows
        assert report["sdpa"]["status"] == "skipped"


def test_compile_mode_without_torch_compile(capsys: pytest.CaptureFixture[str]) -> None:
    if hasattr(torch, "compile"):
        pytest.skip(f"torch {torch.__version__} has torch.compile: compiling on this CPU takes minutes, so "
                    "scripts/bench_gpu.sh measures this mode")
    report = run_json(["--model", str(REGIONS_MODEL), "--batch", "1", "--iters", "1", "--mode", "compile,eager"],
                      capsys)
    assert report["skipped"][0]["mode"] == "compile" and "torch.compile" in report["skipped"][0]["reason"]
    assert [r["mode"] for r in report["results"]] == ["eager"]


def test_reduced_precision_on_the_cpu_is_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    report = run_json(["--model", str(REGIONS_MODEL), "--batch", "1", "--iters", "1", "--precision", "bf16",
                       "--mode", "eager,sdpa"], capsys)
    assert report["precision"] == "bf16" and report["results"] == []
    assert [s["mode"] for s in report["skipped"]] == ["eager", "sdpa"]
    assert all("CUDA only" in s["reason"] for s in report["skipped"]) and report["sdpa"]["status"] == "skipped"


def test_cuda_without_a_device_is_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: scripts/bench_gpu.sh runs this case for real")
    assert bench_torch.main(["--model", str(REGIONS_MODEL), "--batch", "1", "--iters", "1", "--device", "cuda",
                             "--precision", "fp16", "--mode", "eager,compile-ro"]) == 0
    table = capsys.readouterr().out
    assert "eager: skipped: no CUDA device" in table and "compile-ro: skipped: no CUDA device" in table


def test_time_budget(capsys: pytest.CaptureFixture[str]) -> None:
    report = run_json(["--model", str(REGIONS_MODEL), "--batch", "1,2", "--iters", "1", "--budget-s", "0"], capsys)
    assert [(r["batch"], r["status"]) for r in report["results"]] == [(1, "skipped"), (2, "skipped")]
    assert "time budget" in report["results"][0]["reason"]


def test_table_lists_modes_and_skips(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_torch.main(["--model", str(GOLDENS / "cnn_lstm_mcan_softmax"), "--batch", "2", "--iters", "1",
                             "--warmup", "0", "--mode", "eager,compile-ro"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[:2] == ["eager", "2"] for line in lines)
    assert any(line.startswith("compile-ro: skipped: ") for line in lines)


@pytest.mark.parametrize("text", ["", "eager,fast", "1"])
def test_bad_modes(text: str) -> None:
    with pytest.raises(SystemExit):
        bench_torch.main(["--model", str(REGIONS_MODEL), "--mode", text])


def test_sdpa_probe_on_the_cpu() -> None:
    model = VQAModel(tiny_config("regions", "lstm", "mcan", "classifier"), VOCAB, ANSWERS)
    inputs = make_inputs(model.cfg, batch=2)
    probe = bench_torch.probe_sdpa(model, inputs, torch.device("cpu"))
    assert not any(getattr(m, "use_sdpa", False) for m in model.modules())
    if not sdpa_available():
        assert probe["status"] == "skipped" and "scaled_dot_product_attention" in probe["reason"]
        return
    assert probe["status"] == "ok" and probe["default_kernels"]
    assert {"heads": 2, "head_dim": 8, "lq": 4, "lk": 6} in probe["shapes"]  # image queries, text keys


def test_safetensors_reader_matches_the_package(tmp_path: Path) -> None:
    safetensors = pytest.importorskip("safetensors", reason="the package is the reference here")
    tensors = {"f32": torch.randn(3, 4), "f16": torch.randn(5).half(), "bf16": torch.randn(2, 3).bfloat16(),
               "i64": torch.arange(-3, 3), "i32": torch.tensor([[7, -8]], dtype=torch.int32),
               "u8": torch.tensor([0, 255], dtype=torch.uint8), "bool": torch.tensor([True, False, True]),
               "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3)}
    path = tmp_path / "all.safetensors"
    write_safetensors(path, tensors, {"format": "test"})
    for file in (path, REGIONS_MODEL / "model.safetensors"):
        with safetensors.safe_open(str(file), framework="pt") as ref, SafetensorsFile(file) as own:
            assert own.metadata() == ref.metadata() and sorted(own.keys()) == sorted(ref.keys())
            for name in ref.keys():
                a, b = ref.get_tensor(name), own.get_tensor(name)
                assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), name


@pytest.mark.parametrize("damage", ["short", "header_length", "not_json", "offsets", "dtype"])
def test_safetensors_reader_rejects_damaged_files(damage: str, tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    write_safetensors(path, {"a": torch.ones(4)})
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = data[8:8 + size].decode()
    if damage == "short":
        data = data[:5]
    elif damage == "header_length":
        data = (len(data) * 2).to_bytes(8, "little") + data[8:]
    elif damage == "not_json":
        data = data[:8] + b"{" * size + data[8 + size:]
    elif damage == "offsets":
        data = data[:8] + header.replace("[0,16]", "[0,17]").encode() + data[8 + size:]
    else:
        data = data[:8] + header.replace('"F32"', '"F99"').encode() + data[8 + size:]
    path.write_bytes(data)
    with pytest.raises(OwnSafetensorError):
        SafetensorsFile(path)


def test_model_dirs_load_without_the_safetensors_package() -> None:
    """export.load_model_dir with `import safetensors` failing, as on a machine without the package."""
    script = f"""
import importlib.abc, sys
class NoSafetensors(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "safetensors" or name.startswith("safetensors."):
            raise ImportError("no safetensors here")
sys.meta_path.insert(0, NoSafetensors())
sys.path.insert(0, {str(TOOLS)!r})
import torch
from export import load_model_dir
from vqa_ref import safetensors_io
assert safetensors_io.safe_open is safetensors_io.SafetensorsFile
model, cfg, vocab, answers = load_model_dir({str(REGIONS_MODEL)!r})
print(sum(float(p.detach().double().sum()) for p in model.parameters()))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    model = bench_torch.load_model_dir(REGIONS_MODEL)[0]
    assert float(out.stdout) == sum(float(p.detach().double().sum()) for p in model.parameters())


def test_bench_gpu_script_without_a_gpu(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the script would run the whole GPU benchmark")
    env = dict(os.environ, PYTHON=sys.executable)
    run = subprocess.run(["bash", str(REPO / "scripts" / "bench_gpu.sh"), "--out", str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no CUDA device" in run.stdout
    report = json.loads((tmp_path / "cpu-smoke-torch.json").read_text())
    assert report["device"] == "cpu" and {r["mode"] for r in report["results"]} >= {"eager"}
    assert all(r["status"] == "ok" for r in report["results"])

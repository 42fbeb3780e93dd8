"""The benchmark's Python side: the synthetic-input generator (shared with vqa_bench), bench_torch.py, the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bench_inputs import (ImageSpec, batches_from_dump, make_batch, make_image, read_dump, splitmix64,
                          splitmix64_array, stream, stream_key, vocab_words)
from conftest import REPO
from vqa_ref.config import load_config

import bench_report
import bench_torch

GOLDENS = REPO / "tests" / "goldens"
# The vqa_bench to check against (the release preset's unless VQA_BENCH names one); those tests skip without it.
VQA_BENCH = os.environ.get("VQA_BENCH", str(REPO / "build/release/tools/vqa_bench"))


def test_splitmix64_reference_values() -> None:
    # The first outputs of the splitmix64 generator seeded with 0 (Vigna's reference implementation).
    assert splitmix64(0) == 0xE220A8397B1DCDAF
    assert splitmix64(0x9E3779B97F4A7C15) == 0x6E789E6AA1B965F4
    values = np.array([0, 1, 2**63, 2**64 - 1], dtype=np.uint64)
    assert splitmix64_array(values).tolist() == [splitmix64(int(v)) for v in values]


def test_streams_are_counter_based() -> None:
    key = stream_key(7, 0x1234, 3)
    assert stream(key, 5, 4).tolist() == stream(key, 0, 9)[5:].tolist()
    assert stream(key, 0, 3).tolist() == [splitmix64(key + i) for i in range(3)]


def test_images_do_not_depend_on_the_batch() -> None:
    cfg = load_config(GOLDENS / "cnn_lstm_mcan_softmax" / "config.json")
    vocab = json.loads((GOLDENS / "cnn_lstm_mcan_softmax" / "vocab.json").read_text())
    spec = ImageSpec.from_config(cfg)
    small = make_batch(spec, vocab_words(vocab, cfg), 10, 0, 3, 2)
    large = make_batch(spec, vocab_words(vocab, cfg), 10, 0, 9, 2)
    assert small.questions == large.questions[:3] and small.image_index == [0, 0, 1]
    assert len(large.images) == 5 and np.array_equal(small.images[1].pixels, large.images[1].pixels)
    assert small.images[0].pixels.shape == (12, 16, 3) and small.images[0].pixels.std() > 50
    assert all(1 <= len(q.split()) <= 10 for q in large.questions)


def test_region_images() -> None:
    spec = ImageSpec("regions", num_regions=5, feature_dim=7, boxes=True)
    image = make_image(spec, 3, 1)
    assert image.features.shape == (5, 7) and image.features.dtype == np.float32
    assert 0.0 <= image.features.min() and image.features.max() < 1.0
    b = image.boxes
    assert b.shape == (5, 4) and (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
    assert b[:, 2].max() <= 640 and b[:, 3].max() <= 480


@pytest.mark.parametrize("model", ["cnn_lstm_mcan_softmax", "regions_box_lstm_mcan_openvqa",
                                   "regions_lstm_simple_generate_gru"])
def test_bench_torch_json(model: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_torch.main(["--model", str(GOLDENS / model), "--batch", "1,5", "--iters", "2", "--warmup", "1",
                             "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["batch"] for r in report["results"]] == [1, 5]
    assert [r["images"] for r in report["results"]] == [1, 2]
    for r in report["results"]:
        assert r["latency_ms"]["median"] > 0 and r["latency_ms"]["p90"] >= r["latency_ms"]["min"]
        assert len(r["answers"]) == r["batch"]
    assert report["torch"]["version"] and report["threads"] == 1


def test_timing_matches_vqa_bench_definitions() -> None:
    t = bench_torch.timing([5.0, 1.0, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    assert t["median"] == 5.5 and t["p90"] == 9.0 and t["min"] == 1.0 and t["max"] == 10.0


@pytest.mark.skipif(not Path(VQA_BENCH).exists(), reason="no vqa_bench build (set VQA_BENCH)")
@pytest.mark.parametrize("model", ["cnn_lstm_mcan_softmax", "regions_box_lstm_mcan_openvqa"])
def test_same_inputs_and_answers_as_vqa_bench(model: str, tmp_path: Path) -> None:
    model_dir = GOLDENS / model
    dump = tmp_path / "inputs.json"
    engine = subprocess.run([VQA_BENCH, "--model", str(model_dir), "--device", "cpu", "--batch", "1,6", "--iters", "1",
                             "--warmup", "0", "--threads", "1", "--json", "--dump-inputs", str(dump)],
                            capture_output=True, text=True, timeout=120, check=True)
    cfg = load_config(model_dir / "config.json")
    vocab = json.loads((model_dir / "vocab.json").read_text())
    dumped = batches_from_dump(read_dump(dump))
    for batch in dumped:
        mine = make_batch(ImageSpec.from_config(cfg), vocab_words(vocab, cfg),
                          cfg["text"]["tokenizer"]["max_length"], 0, batch.batch, 4)
        assert mine.questions == batch.questions and mine.image_index == batch.image_index
    (tmp_path / f"engine-{model}-t1.json").write_text(engine.stdout)
    torch_run = subprocess.run([sys.executable, bench_torch.__file__, "--model", str(model_dir), "--inputs", str(dump),
                                "--iters", "1", "--warmup", "0", "--json"], capture_output=True, text=True,
                               timeout=120, check=True)
    (tmp_path / f"torch-{model}-t1.json").write_text(torch_run.stdout)
    runs = bench_report.load_runs(tmp_path)
    rows = bench_report.table(runs)
    assert len(rows) == 2 + 2 and all(row.endswith(("| 1/1 | n/a |", "| 6/6 | n/a |")) for row in rows[2:])

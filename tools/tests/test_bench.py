"""The benchmark's Python side: the synthetic-input generator (shared with vqa_bench), bench_torch.py, the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bench_inputs import (IMAGE_TAG, ImageSpec, batches_from_dump, make_batch, make_image, read_dump, splitmix64,
                          splitmix64_array, stream, stream_key, vocab_words)
from conftest import REPO
from vqa_ref.config import load_config

import bench_padding
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


def test_region_counts_spread() -> None:
    full = ImageSpec("regions", num_regions=6, feature_dim=7, boxes=True)
    spread = ImageSpec("regions", num_regions=6, feature_dim=7, boxes=True, region_counts=(2, 5))
    counts = []
    for index in range(40):
        whole, part = make_image(full, 3, index), make_image(spread, 3, index)
        n = part.features.shape[0]
        counts.append(n)
        # The count is value N * (F + 4) of the image's stream, past the features and boxes of a full image.
        assert n == 2 + splitmix64(stream_key(3, IMAGE_TAG, index) + 6 * (7 + 4)) % 4
        # Region r is the same whatever the count: the first n rows of the full image.
        assert np.array_equal(part.features, whole.features[:n]) and np.array_equal(part.boxes, whole.boxes[:n])
    assert set(counts) == {2, 3, 4, 5}
    # MIN = MAX = max_regions is the default: every image full.
    same = ImageSpec("regions", num_regions=6, feature_dim=7, boxes=True, region_counts=(6, 6))
    assert np.array_equal(make_image(same, 3, 1).features, make_image(full, 3, 1).features)


def test_dump_region_counts_are_checked(tmp_path: Path) -> None:
    spec = {"kind": "regions", "num_regions": 6, "region_counts": [2, 5], "feature_dim": 7, "boxes": False,
            "image_width": 640, "image_height": 480}
    counts = [make_image(ImageSpec.from_json(spec), 0, m).features.shape[0] for m in range(2)]
    dump = {"format": "vqa_bench-inputs/1", "generator": "splitmix64", "seed": 0, "questions_per_image": 4,
            "image": spec, "batches": [{"batch": 5, "images": 2, "image_index": [0, 0, 0, 0, 1],
                                        "questions": ["a"] * 5, "num_regions": counts}]}
    (tmp_path / "in.json").write_text(json.dumps(dump))
    [batch] = batches_from_dump(read_dump(tmp_path / "in.json"))
    assert [im.features.shape[0] for im in batch.images] == counts
    dump["batches"][0]["num_regions"] = [c % 5 + 1 for c in counts]  # not what the generator draws
    with pytest.raises(ValueError, match="region counts"):
        batches_from_dump(dump)


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
@pytest.mark.parametrize("model,regions", [("cnn_lstm_mcan_softmax", None), ("regions_box_lstm_mcan_openvqa", None),
                                           ("regions_box_lstm_mcan_openvqa", (1, 5))])
def test_same_inputs_and_answers_as_vqa_bench(model: str, regions: tuple[int, int] | None, tmp_path: Path) -> None:
    model_dir = GOLDENS / model
    dump = tmp_path / "inputs.json"
    spread = [] if regions is None else ["--regions", f"{regions[0]},{regions[1]}"]
    engine = subprocess.run([VQA_BENCH, "--model", str(model_dir), "--device", "cpu", "--batch", "1,6", "--iters", "1",
                             "--warmup", "0", "--threads", "1", "--json", "--dump-inputs", str(dump), *spread],
                            capture_output=True, text=True, timeout=120, check=True)
    cfg = load_config(model_dir / "config.json")
    vocab = json.loads((model_dir / "vocab.json").read_text())
    dumped = batches_from_dump(read_dump(dump))  # raises if its region counts are not the ones vqa_bench drew
    for batch in dumped:
        mine = make_batch(ImageSpec.from_config(cfg, regions), vocab_words(vocab, cfg),
                          cfg["text"]["tokenizer"]["max_length"], 0, batch.batch, 4)
        assert mine.questions == batch.questions and mine.image_index == batch.image_index
        for ours, theirs in zip(mine.images, batch.images):
            assert ours.features is None or np.array_equal(ours.features, theirs.features)
    if regions is not None:
        counts = read_dump(dump)["batches"][1]["num_regions"]
        assert counts == [im.features.shape[0] for im in dumped[1].images] and all(1 <= c <= 5 for c in counts)
        assert sum(r["regions"] for r in json.loads(engine.stdout)["results"]) == counts[0] + sum(counts)
    (tmp_path / f"engine-{model}-t1.json").write_text(engine.stdout)
    torch_run = subprocess.run([sys.executable, bench_torch.__file__, "--model", str(model_dir), "--inputs", str(dump),
                                "--iters", "1", "--warmup", "0", "--json"], capture_output=True, text=True,
                               timeout=120, check=True)
    (tmp_path / f"torch-{model}-t1.json").write_text(torch_run.stdout)
    runs = bench_report.load_runs(tmp_path)
    rows = bench_report.table(runs)
    assert len(rows) == 2 + 2 and all(row.endswith(("| 1/1 | n/a |", "| 6/6 | n/a |")) for row in rows[2:])


def padding_report(threads: int, gain: float) -> dict:
    """A made-up `vqa_bench --padding packed,padded --json` report of batch 4 (packed 10 ms)."""
    def mode(ms: float) -> dict:
        return {"latency_ms": {"median": ms}, "from_features_ms": {"median": ms / 2}, "answers": ["a"] * 4}
    row = {"batch": 4, "images": 1, "regions": 55, "by_padding": {"packed": mode(10.0), "padded": mode(10.0 * gain)},
           "packing_gain": {"latency": gain, "from_features": gain, "same_top1": 4}}
    return {"tool": "vqa_bench", "model": {"name": "m"}, "device": "cpu", "precision": "fp32", "threads": threads,
            "padding": ["packed", "padded"], "results": [row]}


def test_bench_padding_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for r, gain in enumerate([1.2, 1.5, 1.4]):
        (tmp_path / f"m-t1-r{r}.json").write_text(json.dumps(padding_report(1, gain)))
    one_mode = padding_report(2, 1.0) | {"padding": ["packed"]}
    (tmp_path / "m-t2-r0.json").write_text(json.dumps(one_mode))  # not a comparison: left out
    assert bench_padding.main([str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    # Medians over rounds: 10 ms packed, 14 ms padded; the range is over single rounds.
    assert lines[2] == ("| m | cpu | fp32 | 1 | 4 | 1 | 55.0 | 10.000 | 14.000 | 1.400 | 1.200-1.500 (3) | 5.000 "
                        "| 7.000 | 1.400 | 4/4 |")
    assert bench_padding.main([str(tmp_path / "m-t2-r0.json")]) == 1


@pytest.mark.skipif(not Path(VQA_BENCH).exists(), reason="no vqa_bench build (set VQA_BENCH)")
def test_vqa_bench_packed_and_padded(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = subprocess.run([VQA_BENCH, "--model", str(GOLDENS / "regions_box_lstm_mcan_openvqa"), "--device", "cpu",
                          "--batch", "1,6", "--iters", "2", "--warmup", "1", "--threads", "1", "--regions", "1,5",
                          "--padding", "padded,packed", "--from-features", "--json"],
                         capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(run.stdout)
    assert report["padding"] == ["packed", "padded"] and report["model"]["image"]["region_counts"] == [1, 5]
    for row in report["results"]:
        assert set(row["by_padding"]) == {"packed", "padded"} and row["padding"] == "packed"
        assert row["latency_ms"] == row["by_padding"]["packed"]["latency_ms"]
        # Packing drops only padding: the answers are the padded path's.
        assert row["packing_gain"]["same_top1"] == row["batch"]
        assert row["by_padding"]["packed"]["answers"] == row["by_padding"]["padded"]["answers"]
        packed, padded = (row["by_padding"][m]["from_features_ms"]["median"] for m in ("packed", "padded"))
        assert row["packing_gain"]["from_features"] == pytest.approx(padded / packed)
    (tmp_path / "run.json").write_text(run.stdout)
    assert bench_padding.main([str(tmp_path)]) == 0 and "| 6/6 |" in capsys.readouterr().out
    bad = subprocess.run([VQA_BENCH, "--model", str(GOLDENS / "regions_box_lstm_mcan_openvqa"), "--regions", "0,3"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "1 <= MIN <= MAX <= 6" in bad.stderr

"""The committed tests/goldens must be what make_goldens.py writes and what the reference model computes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import REPO
from export import load_model_dir
from make_goldens import VARIANTS
from make_goldens import main as make_goldens
from safetensors import safe_open
from safetensors.torch import load_file
from vqa_ref.preprocess import load_and_preprocess
from vqa_ref.tokenizer import Tokenizer

GOLDENS = REPO / "tests" / "goldens"
REGENERATED = ["cnn_lstm_mcan_softmax", "regions_box_lstm_mcan_openvqa", "regions_lstm_simple_generate_gru"]
# Files holding computed floats may differ in the last bits on another CPU; everything else must match exactly.
COMPUTED = ("inputs.safetensors", "activations.safetensors")

pytestmark = pytest.mark.skipif(not GOLDENS.is_dir(), reason=f"{GOLDENS} is absent: run "
                                "`python tools/make_goldens.py --out tests/goldens --seed 0` to create it")


def _assert_same_tensors(expected: Path, actual: Path) -> None:
    with safe_open(str(expected), "pt") as a, safe_open(str(actual), "pt") as b:
        assert a.metadata() == b.metadata()
        assert sorted(a.keys()) == sorted(b.keys())
        for name in a.keys():
            x, y = a.get_tensor(name), b.get_tensor(name)
            assert x.dtype == y.dtype and x.shape == y.shape, name
            torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-6, msg=lambda m: f"{actual}: {name}: {m}")


def test_regenerated_goldens_match(tmp_path: Path) -> None:
    assert make_goldens(["--out", str(tmp_path), "--seed", "0", "--variants", *REGENERATED]) == 0
    assert (tmp_path / "README.md").read_bytes() == (GOLDENS / "README.md").read_bytes()
    for name in REGENERATED:
        committed = sorted(p.name for p in (GOLDENS / name).iterdir())
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == committed
        for file in committed:
            new, old = tmp_path / name / file, GOLDENS / name / file
            if new.read_bytes() == old.read_bytes():
                continue
            assert file in COMPUTED, f"{old} differs from a fresh make_goldens run"
            _assert_same_tensors(old, new)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_committed_golden_is_consistent(name: str) -> None:
    root = GOLDENS / name
    model, cfg, vocab, answers = load_model_dir(root)
    inputs = load_file(str(root / "inputs.safetensors"))
    expected = load_file(str(root / "activations.safetensors"))
    questions = json.loads((root / "questions.json").read_text())
    tokenizer = Tokenizer(cfg, vocab)
    encoded = [tokenizer.encode(q) for q in questions]
    assert inputs["ids"].tolist() == [ids for ids, _ in encoded]
    assert inputs["lengths"].tolist() == [n for _, n in encoded]
    if "images" in inputs:
        image0 = load_and_preprocess(root / "image0.png", cfg)
        torch.testing.assert_close(image0, inputs["images"][0], rtol=0, atol=1e-6)
    with torch.no_grad():
        acts = model(**inputs, return_activations=True)
    assert sorted(acts) == sorted(expected)
    for key, value in acts.items():
        value = value.float() if value.dtype == torch.bool else value
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6, msg=lambda m: f"{key}: {m}")

"""The bundled model directory is valid, and the reference model gives the documented example answers."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from export import load_model_dir
from vqa_ref.preprocess import load_and_preprocess
from vqa_ref.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[2]


def test_bundled_model_answers_examples() -> None:
    model, cfg, vocab, answers = load_model_dir(ROOT / "models" / "easy-vqa")
    tok = Tokenizer(cfg["text"]["tokenizer"], vocab)
    lines = [json.loads(x) for x in (ROOT / "examples" / "questions.jsonl").read_text().splitlines() if x.strip()]
    images = sorted({x["image"] for x in lines})
    pixels = torch.stack([load_and_preprocess(ROOT / "examples" / im, cfg) for im in images])
    encoded = [tok.encode(x["question"]) for x in lines]
    with torch.no_grad():
        logits = model(torch.tensor([ids for ids, _ in encoded]), torch.tensor([n for _, n in encoded]),
                       images=pixels, image_index=torch.tensor([images.index(x["image"]) for x in lines]))
    got = [answers[i] for i in logits.argmax(1).tolist()]
    assert got == [x["expected"] for x in lines]


def test_bundled_model_metrics_recorded() -> None:
    metrics = json.loads((ROOT / "models" / "easy-vqa" / "metrics.json").read_text())
    assert metrics["test_questions"] == 9673
    assert 0.0 < metrics["test_accuracy"] <= 1.0

"""openvqa MCAN checkpoints converted by tools/convert_openvqa.py give openvqa's logits (docs/openvqa.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from convert_openvqa import ConvertError, convert, load_openvqa_state_dict, main as convert_main, map_name
from export import load_model_dir
from openvqa_ref import (OpenVQAMCAN, OpenVQASizes, openvqa_build_vocab, openvqa_question_ids, openvqa_region_inputs,
                         randomize, save_openvqa_checkpoint)
from vqa_ref.preprocess import pad_regions
from vqa_ref.tokenizer import Tokenizer

TRAINING = ["What color is the umbrella?", "is there a zebra", "How many people are there?",
            "is the man's shirt red/white", "what is on the left-hand side of the street", "CLS pad unk"]
QUESTIONS = ["what color is the umbrella", "Is there a ZEBRA?!", "how many", "what is the man-made thing",
             "is there a giraffe on the left side of the street next to the red umbrella and the zebra",
             "unk", "cls pad", "street"]
TOLERANCE = 1e-4
TINY = dict(hidden=32, heads=4, ff=48, layers=2, embed=12, frcn_feat=16, use_bbox=True, bbox_emb=8, flat_mlp=16,
            glimpses=1, flat_out=24)


def _answer_dict(n: int) -> list[dict]:
    names = [f"answer {i}" for i in range(n)]
    return [{a: i for i, a in enumerate(names)}, {str(i): a for i, a in enumerate(names)}]


def _images(rng: np.random.Generator, feature_dim: int, counts: list[int]) -> list[tuple]:
    """openvqa .npz contents: x [F, N], bbox [N, 4] pixels, w, h; a zero row inside the valid regions."""
    out = []
    for n in counts:
        w, h = float(rng.integers(200, 800)), float(rng.integers(200, 800))
        x = rng.uniform(0, 3, (feature_dim, n)).astype(np.float32)
        x[:, n // 2] = 0.0
        x1, y1 = rng.uniform(0, w / 2, n), rng.uniform(0, h / 2, n)
        bbox = np.stack([x1, y1, x1 + rng.uniform(5, w / 2, n), y1 + rng.uniform(5, h / 2, n)], 1).astype(np.float32)
        out.append((x, bbox, w, h))
    return out


def _parity(tmp_path: Path, sizes: dict, seed: int, legacy: bool, data_parallel: bool,
            batches: list[tuple[list[int], list[str]]], num_answers: int = 10) -> list[float]:
    vocab = openvqa_build_vocab(TRAINING)
    net = OpenVQAMCAN(OpenVQASizes(vocab=len(vocab), answers=num_answers, **sizes))
    randomize(net, seed)
    ckpt = save_openvqa_checkpoint(net, tmp_path / "ckpt.pkl", legacy=legacy, data_parallel=data_parallel)
    vocab_path, answers_path = tmp_path / "token_to_ix.json", tmp_path / "answer_dict.json"
    vocab_path.write_text(json.dumps(vocab))
    answers_path.write_text(json.dumps(_answer_dict(num_answers)))
    args = ["--checkpoint", str(ckpt), "--answers", str(answers_path), "--vocab", str(vocab_path),
            "--out", str(tmp_path / "model")]
    if sizes["hidden"] % 64:
        args += ["--heads", str(sizes["heads"])]
    assert convert_main(args) == 0
    model, cfg, our_vocab, answers = load_model_dir(tmp_path / "model")
    assert cfg["fusion"]["heads"] == sizes["heads"] and cfg["image"]["regions"]["max_regions"] == 100
    tokenizer = Tokenizer(cfg, our_vocab)
    rng = np.random.default_rng(seed)
    errors = []
    for counts, questions in batches:
        imgs = _images(rng, sizes["frcn_feat"], counts)
        ov = [openvqa_region_inputs(x, b, w, h) for x, b, w, h in imgs]
        ours = [pad_regions(x.T, 100, b, w, h) for x, b, w, h in imgs]
        image_index = torch.tensor([i % len(imgs) for i in range(len(questions))])
        enc = [tokenizer.encode(q) for q in questions]
        for q, (ids, _) in zip(questions, enc):
            assert ids == openvqa_question_ids(q, vocab).tolist(), q
        with torch.no_grad():
            want = net(torch.from_numpy(np.stack([f for f, _ in ov]))[image_index],
                       torch.from_numpy(np.stack([b for _, b in ov]))[image_index],
                       torch.tensor([e[0] for e in enc]))
            got = model(torch.tensor([e[0] for e in enc]), torch.tensor([e[1] for e in enc]),
                        regions=torch.stack([r.features for r in ours]), boxes5=torch.stack([r.boxes5 for r in ours]),
                        image_index=image_index)
        err = ((got - want).abs().max() / want.abs().max()).item()
        errors.append(err)
        assert err <= TOLERANCE, f"regions {counts}: relative error {err:.3e}"
        assert torch.equal(got.argmax(1), want.argmax(1))
    return errors


BATCHES = [([10, 37, 100], QUESTIONS[:5]), ([100, 64], QUESTIONS[3:]), ([23], QUESTIONS[4:6]),
           ([150, 11, 99, 50], QUESTIONS)]


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy_pickle", "zip"])
@pytest.mark.parametrize("data_parallel", [False, True], ids=["plain", "module_prefix"])
def test_tiny_parity(tmp_path: Path, legacy: bool, data_parallel: bool) -> None:
    errors = _parity(tmp_path, TINY, seed=3, legacy=legacy, data_parallel=data_parallel, batches=BATCHES)
    print("relative errors:", ", ".join(f"{e:.2e}" for e in errors))


def test_tiny_parity_without_boxes(tmp_path: Path) -> None:
    sizes = dict(TINY, use_bbox=False, glimpses=2)
    _parity(tmp_path, sizes, seed=5, legacy=True, data_parallel=False, batches=BATCHES[:2])


def test_full_small_configuration(tmp_path: Path) -> None:
    """openvqa's small MCAN (512/8/2048/6, F=2048, box branch 2048, out 1024), heads inferred."""
    start = time.monotonic()
    sizes = dict(hidden=512, heads=8, ff=2048, layers=6, embed=300, frcn_feat=2048, use_bbox=True, bbox_emb=2048,
                 flat_mlp=512, glimpses=1, flat_out=1024)
    errors = _parity(tmp_path, sizes, seed=1, legacy=True, data_parallel=True,
                     batches=[([10, 100], QUESTIONS[:4]), ([57], QUESTIONS[4:6])], num_answers=300)
    print(f"small: relative errors {errors}, {time.monotonic() - start:.1f} s")


def test_name_map_covers_every_openvqa_tensor() -> None:
    net = OpenVQAMCAN(OpenVQASizes(vocab=5, answers=3, **TINY))
    names = [map_name(k) for k in net.state_dict()]
    assert len(set(names)) == len(names)
    assert map_name("backbone.dec_list.3.mhatt2.linear_merge.weight") == "fusion.image.3.cross_att.o.weight"
    assert map_name("attflat_lang.mlp.fc.linear.bias") == "pool.text.fc1.bias"
    assert map_name("proj_norm.a_2") == "head.norm.weight"
    assert map_name("img_feat_linear.weight") == "image.adapter.weight"
    with pytest.raises(ConvertError, match="no mapping"):
        map_name("adapter.grid_linear.weight")


def test_vocab_from_questions_files(tmp_path: Path) -> None:
    """--questions rebuilds openvqa's dictionary: PAD 0, UNK 1, CLS 2, words in first-seen order."""
    vocab = openvqa_build_vocab(TRAINING)
    assert list(vocab)[:6] == ["PAD", "UNK", "CLS", "what", "color", "is"]
    assert "man" not in vocab and "s" not in vocab and "mans" in vocab and "left" in vocab and "hand" in vocab
    net = OpenVQAMCAN(OpenVQASizes(vocab=len(vocab), answers=4, **TINY))
    ckpt = save_openvqa_checkpoint(net, tmp_path / "c.pkl")
    qfile = tmp_path / "q.json"
    qfile.write_text(json.dumps({"questions": [{"question": q, "question_id": i} for i, q in enumerate(TRAINING)]}))
    (tmp_path / "a.json").write_text(json.dumps(_answer_dict(4)))
    assert convert_main(["--checkpoint", str(ckpt), "--answers", str(tmp_path / "a.json"), "--questions", str(qfile),
                         "--heads", "4", "--out", str(tmp_path / "m")]) == 0
    written = json.loads((tmp_path / "m" / "vocab.json").read_text())
    assert written["<pad>"] == 0 and written["<unk>"] == 1 and written["CLS"] == 2
    assert {k: v for k, v in written.items() if not k.startswith("<")} == {
        k: v for k, v in vocab.items() if k not in ("PAD", "UNK")}


def test_mismatched_dictionaries_are_refused(tmp_path: Path) -> None:
    vocab = openvqa_build_vocab(TRAINING)
    net = OpenVQAMCAN(OpenVQASizes(vocab=len(vocab), answers=4, **TINY))
    state = load_openvqa_state_dict(save_openvqa_checkpoint(net, tmp_path / "c.pkl", legacy=False))
    with pytest.raises(ConvertError, match="answers"):
        convert(state, vocab, _answer_dict(5), tmp_path / "m", heads=4)
    with pytest.raises(ConvertError, match="embedding has"):
        convert(state, dict(vocab, extra=len(vocab)), _answer_dict(4), tmp_path / "m", heads=4)
    with pytest.raises(ConvertError, match="--heads"):
        convert(state, vocab, _answer_dict(4), tmp_path / "m")
    torch.save({"model": {}}, str(tmp_path / "bad.pkl"))
    with pytest.raises(ConvertError, match="state_dict"):
        load_openvqa_state_dict(tmp_path / "bad.pkl")


def test_committed_fixture_matches_generator(tmp_path: Path) -> None:
    """tests/goldens-openvqa/mcan_tiny is what tools/make_openvqa_golden.py writes."""
    from make_openvqa_golden import write
    from safetensors.numpy import load_file

    write(tmp_path, 0)
    committed = Path(__file__).resolve().parents[2] / "tests" / "goldens-openvqa" / "mcan_tiny"
    want = load_file(str(committed / "expected.safetensors"))["logits"]
    np.testing.assert_allclose(load_file(str(tmp_path / "expected.safetensors"))["logits"], want, rtol=0, atol=1e-6)
    assert (tmp_path / "config.json").read_text() == (committed / "config.json").read_text()

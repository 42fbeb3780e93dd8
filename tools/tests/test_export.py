from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TOOLS, tiny_config
from export import ModelDirError, load_model_dir, main, random_inputs, read_safetensors, save_model_dir
from safetensors import safe_open
from vqa_ref.config import ConfigError
from vqa_ref.model import VQAModel, spec_state_dict
from vqa_ref.safetensors_io import write_safetensors
from vqa_ref.tokenizer import VocabError, build_vocab

ANSWERS = ["yes", "no", "red", "blue", "<x>"]


def _bundle(image: str = "regions", head: str = "classifier", text: str = "lstm") -> tuple:
    cfg = tiny_config(image, text, "mcan", head)
    vocab = build_vocab(["what color is the shape", "is there a circle"], cfg)
    model = VQAModel(cfg, len(vocab) + 2, len(ANSWERS))  # V may exceed the vocab
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.normal_(0, 0.3)
            if tensor.dim() == 1 and tensor.is_floating_point():
                tensor.abs_().add_(0.1)  # BN running_var must stay positive
    return model, cfg, vocab, list(ANSWERS)


@pytest.mark.parametrize("image,head,text", [("regions", "classifier", "lstm"), ("cnn", "generate", "transformer")])
def test_round_trip(tmp_path: Path, image: str, head: str, text: str) -> None:
    model, cfg, vocab, answers = _bundle(image, head, text)
    save_model_dir(model, cfg, vocab, answers, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answers.json", "config.json", "model.safetensors",
                                                          "vocab.json"]
    loaded, cfg2, vocab2, answers2 = load_model_dir(tmp_path)
    assert (cfg2, vocab2, answers2) == (cfg, vocab, answers)
    ours, theirs = spec_state_dict(model), spec_state_dict(loaded)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    inputs = random_inputs(cfg, loaded.vocab_size)
    with torch.no_grad():
        a, b = model(**inputs, return_activations=True), loaded(**inputs, return_activations=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "vqa-engine", "format_version": "1"}
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float32}
    config_text = (tmp_path / "config.json").read_text()
    assert config_text.startswith('{\n  "format": "vqa-engine",\n') and json.loads(config_text) == cfg


def test_half_precision_tensors_are_widened(tmp_path: Path) -> None:
    model, cfg, vocab, answers = _bundle()
    save_model_dir(model, cfg, vocab, answers, tmp_path)
    tensors = read_safetensors(tmp_path / "model.safetensors")
    half = {k: v.to(torch.float16 if i % 2 else torch.bfloat16) for i, (k, v) in enumerate(tensors.items())}
    write_safetensors(tmp_path / "model.safetensors", half, {"format": "vqa-engine", "format_version": "1"})
    loaded, *_ = load_model_dir(tmp_path)
    for name, value in spec_state_dict(loaded).items():
        assert torch.equal(value, half[name].float())


def _broken(tmp_path: Path, edit) -> Path:
    model, cfg, vocab, answers = _bundle()
    save_model_dir(model, cfg, vocab, answers, tmp_path)
    edit(tmp_path)
    return tmp_path


def _edit_tensors(change):
    def edit(root: Path) -> None:
        tensors = read_safetensors(root / "model.safetensors")
        change(tensors)
        write_safetensors(root / "model.safetensors", tensors, {"format": "vqa-engine", "format_version": "1"})
    return edit


def _edit_json(name: str, change):
    def edit(root: Path) -> None:
        value = json.loads((root / name).read_text())
        change(value)  # edits in place
        (root / name).write_text(json.dumps(value))
    return edit


BROKEN = {
    "missing tensor": (_edit_tensors(lambda t: t.pop("pool.text.fc1.bias")), ModelDirError,
                       "missing tensor.*pool.text.fc1.bias"),
    "extra tensor": (_edit_tensors(lambda t: t.update({"head.extra": torch.zeros(2)})), ModelDirError,
                     "unexpected tensor 'head.extra'"),
    "wrong shape": (_edit_tensors(lambda t: t.update({"image.box.weight": torch.zeros(3, 4)})), ModelDirError,
                    r"image.box.weight.*expected shape \[3, 5\], got \[3, 4\]"),
    "int tensor": (_edit_tensors(lambda t: t.update({"image.box.bias": torch.zeros(3, dtype=torch.int64)})),
                   ModelDirError, "expected dtype F32"),
    "no metadata": (lambda root: write_safetensors(root / "model.safetensors",
                                                   read_safetensors(root / "model.safetensors")),
                    ModelDirError, "__metadata__"),
    "not safetensors": (lambda root: (root / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{"),
                        ModelDirError, "not a valid safetensors"),
    "vocab id range": (_edit_json("vocab.json", lambda v: v.update({"zebra": 999})), VocabError,
                       r"id 999 outside \[0, 12\)"),
    "vocab no unk": (_edit_json("vocab.json", lambda v: v.pop("<unk>")), VocabError, "<unk>"),
    "answers count": (_edit_json("answers.json", lambda a: a.pop()), ModelDirError, "expected 5 entries"),
    "config typo": (_edit_json("config.json", lambda c: c["fusion"].update({"heds": 2})), ConfigError,
                    "fusion.heds: unknown key"),
    "repeated vocab key": (lambda root: (root / "vocab.json").write_text('{"<pad>": 0, "<unk>": 1, "a": 2, "a": 3}'),
                           ModelDirError, "appears twice"),
    "no config": (lambda root: (root / "config.json").unlink(), ConfigError, "cannot read"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_load_rejects(tmp_path: Path, case: str) -> None:
    edit, error, message = BROKEN[case]
    with pytest.raises(error, match=message):
        load_model_dir(_broken(tmp_path, edit))


def test_generate_ids_must_be_answers(tmp_path: Path) -> None:
    model, cfg, vocab, answers = _bundle("cnn", "generate")
    cfg["head"]["eos_id"] = len(answers)
    with pytest.raises(ModelDirError, match="head.eos_id: expected an id < 5"):
        save_model_dir(model, cfg, vocab, answers, tmp_path)


def test_cli_checkpoint_export_and_check(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model, cfg, vocab, answers = _bundle("cnn", "classifier")
    ckpt = tmp_path / "model.pt"
    torch.save({"config": cfg, "state_dict": model.state_dict(), "vocab": vocab, "answers": answers}, ckpt)
    out = tmp_path / "dir"
    assert main(["--checkpoint", str(ckpt), "--out", str(out)]) == 0
    assert main(["--check", str(out), "--checkpoint", str(ckpt)]) == 0
    assert "max relative error" in capsys.readouterr().out
    assert main(["--check", str(out)]) == 0
    other = model.state_dict()
    other["head.classifier.bias"] = other["head.classifier.bias"] + 0.01
    torch.save({"config": cfg, "state_dict": other, "vocab": vocab, "answers": answers}, ckpt)
    assert main(["--check", str(out), "--checkpoint", str(ckpt)]) == 1
    assert "FAIL" in capsys.readouterr().out
    (out / "answers.json").write_text("[]")
    assert main(["--check", str(out)]) == 2


def test_cli_exit_codes_in_a_process(tmp_path: Path) -> None:
    model, cfg, vocab, answers = _bundle("regions", "generate")
    save_model_dir(model, cfg, vocab, answers, tmp_path / "ok")
    run = [sys.executable, str(TOOLS / "export.py"), "--check"]
    ok = subprocess.run(run + [str(tmp_path / "ok")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(run + [str(tmp_path / "missing")], capture_output=True, text=True)
    assert bad.returncode == 2 and "not a directory" in bad.stderr

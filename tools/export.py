"""Write, read and check vqa-engine model directories (docs/model-format.md).

  python tools/export.py --checkpoint CKPT.pt --out DIR     # checkpoint -> model directory
  python tools/export.py --check DIR [--checkpoint CKPT.pt]  # reload DIR, compare with the checkpoint

A checkpoint is a `torch.save`d dict {"config", "state_dict", "vocab", "answers"}; its state_dict may use the
PyTorch module names (`VQAModel.state_dict()`) or the model.safetensors names.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vqa_ref.config import (ConfigError, FORMAT, config_to_json, load_config, reject_duplicate_keys,  # noqa: E402
                            validate_config)
from vqa_ref.model import VQAModel, load_spec_state_dict, spec_state_dict  # noqa: E402
from vqa_ref.safetensors_io import SafetensorError, safe_open, write_safetensors  # noqa: E402
from vqa_ref.tokenizer import VocabError, check_vocab  # noqa: E402

METADATA = {"format": FORMAT, "format_version": "1"}
READ_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
CHECK_TOLERANCE = 1e-5


class ModelDirError(ValueError):
    """A model directory (or checkpoint) is incomplete or inconsistent."""


def check_answers(answers: Any, num_answers: int, cfg: dict, source: str = "answers.json") -> None:
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise ModelDirError(f"{source}: expected a JSON array of strings")
    if len(answers) != num_answers:
        raise ModelDirError(f"{source}: expected {num_answers} entries (the head's output size), got {len(answers)}")
    head = cfg["head"]
    if head["type"] == "generate":
        for key in ("bos_id", "eos_id"):
            if head[key] >= num_answers:
                raise ModelDirError(f"config.json: head.{key}: expected an id < {num_answers} "
                                    f"(entries of {source}), got {head[key]}")


def _write_json(path: Path, value: Any, sort_keys: bool = True) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=sort_keys, ensure_ascii=False) + "\n", encoding="utf-8")


def save_model_dir(model: VQAModel, cfg: dict, vocab: dict[str, int], answers: list[str],
                   out_dir: str | Path) -> Path:
    """Write config.json, model.safetensors (F32), vocab.json and answers.json; return the directory."""
    validate_config(cfg)
    check_vocab(vocab, cfg, model.vocab_size)
    check_answers(answers, model.num_answers, cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in spec_state_dict(model).items()}
    (out / "config.json").write_text(config_to_json(cfg), encoding="utf-8")
    write_safetensors(out / "model.safetensors", tensors, METADATA)
    _write_json(out / "vocab.json", dict(sorted(vocab.items(), key=lambda kv: kv[1])), sort_keys=False)
    _write_json(out / "answers.json", list(answers))
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=reject_duplicate_keys)
    except OSError as e:
        raise ModelDirError(f"{path}: cannot read: {e.strerror}") from e
    except ValueError as e:  # bad UTF-8, bad JSON, a repeated key
        raise ModelDirError(f"{path}: invalid JSON: {e}") from e


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a model.safetensors, widened to fp32; the metadata must name the format."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT or meta.get("format_version") != "1":
                raise ModelDirError(f"{path.name}: __metadata__: expected {json.dumps(METADATA)}, "
                                    f"got {json.dumps(meta)}")
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError) as e:
        raise ModelDirError(f"{path.name}: not a valid safetensors file: {e}") from e
    for name, value in tensors.items():
        if value.dtype not in READ_DTYPES:
            raise ModelDirError(f"{path.name}: tensor {name!r}: expected dtype F32, F16 or BF16, got {value.dtype}")
        tensors[name] = value.float()
    return tensors


def _sizes(tensors: dict[str, torch.Tensor], cfg: dict, source: str) -> tuple[int, int]:
    """V and A, read from the embedding and the head's output layer."""
    out_name = "head.classifier.weight" if cfg["head"]["type"] == "classifier" else "head.out.weight"
    for name in ("text.embedding.weight", out_name):
        if name not in tensors:
            raise ModelDirError(f"{source}: missing tensor {name!r}")
        if tensors[name].dim() != 2:
            raise ModelDirError(f"{source}: tensor {name!r}: expected 2 dims, got {list(tensors[name].shape)}")
    return tensors["text.embedding.weight"].shape[0], tensors[out_name].shape[0]


def build_model(cfg: dict, tensors: dict[str, torch.Tensor], source: str) -> VQAModel:
    vocab_size, num_answers = _sizes(tensors, cfg, source)
    model = VQAModel(cfg, vocab_size, num_answers)
    try:
        load_spec_state_dict(model, tensors)
    except ValueError as e:
        raise ModelDirError(f"{source}: {e}") from e
    return model.eval()


def load_model_dir(model_dir: str | Path) -> tuple[VQAModel, dict, dict[str, int], list[str]]:
    """Read and validate a model directory; return (model in eval mode, config, vocab, answers)."""
    root = Path(model_dir)
    if not root.is_dir():
        raise ModelDirError(f"{root}: not a directory")
    cfg = load_config(root / "config.json")
    tensors = read_safetensors(root / "model.safetensors")
    model = build_model(cfg, tensors, "model.safetensors")
    vocab = _read_json(root / "vocab.json")
    check_vocab(vocab, cfg, model.vocab_size)
    answers = _read_json(root / "answers.json")
    check_answers(answers, model.num_answers, cfg)
    return model, cfg, vocab, answers


def load_checkpoint(path: str | Path) -> tuple[VQAModel, dict, dict[str, int], list[str]]:
    ckpt = torch.load(str(path), map_location="cpu")  # a pickle: load only checkpoints you trust
    if not isinstance(ckpt, dict) or not {"config", "state_dict", "vocab", "answers"} <= set(ckpt):
        raise ModelDirError(f"{path}: expected a dict with config, state_dict, vocab and answers")
    cfg = validate_config(ckpt["config"], source=f"{Path(path).name}: config")
    model = build_model(cfg, dict(ckpt["state_dict"]), Path(path).name)
    check_vocab(ckpt["vocab"], cfg, model.vocab_size, source=f"{Path(path).name}: vocab")
    check_answers(ckpt["answers"], model.num_answers, cfg, source=f"{Path(path).name}: answers")
    return model, cfg, ckpt["vocab"], ckpt["answers"]


def random_inputs(cfg: dict, vocab_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Fixed random forward inputs: 4 questions on 3 images (questions 0 and 1 share image 0)."""
    gen = torch.Generator().manual_seed(seed)
    steps = cfg["text"]["tokenizer"]["max_length"]
    batch, num_images = 4, 3
    inputs = {"ids": torch.randint(0, vocab_size, (batch, steps), generator=gen),
              "lengths": torch.randint(1, steps + 1, (batch,), generator=gen),
              "image_index": torch.tensor([0, 0, 1, 2])}
    image = cfg["image"]
    if image["encoder"] == "regions":
        reg = image["regions"]
        regions = torch.randn(num_images, reg["max_regions"], reg["feature_dim"], generator=gen)
        regions[1, reg["max_regions"] // 2:] = 0
        inputs["regions"] = regions
        if reg["box_features"]:
            inputs["boxes5"] = torch.rand(num_images, reg["max_regions"], 5, generator=gen)
    else:
        size = (num_images, 3, image["input"]["height"], image["input"]["width"])
        inputs["images"] = torch.randn(size, generator=gen)
    return inputs


def compare_outputs(ref: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> tuple[float, list[str]]:
    """Max relative error (max |a - b| / max |b| per tensor) over float outputs; names of mismatches."""
    worst, bad = 0.0, []
    for name, expected in ref.items():
        actual = got.get(name)
        if actual is None or actual.shape != expected.shape:
            bad.append(name)
            continue
        if expected.dtype in (torch.bool, torch.long):
            if not torch.equal(actual, expected):
                bad.append(name)
            continue
        if not torch.isfinite(actual).all():
            bad.append(name)
            continue
        scale = expected.abs().max().item() if expected.numel() else 0.0
        err = (actual - expected).abs().max().item() / max(scale, 1e-30) if expected.numel() else 0.0
        worst = max(worst, err)
        if err > CHECK_TOLERANCE:
            bad.append(name)
    return worst, bad


def _activations(model: VQAModel, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return model(**inputs, return_activations=True)


def check_dir(model_dir: Path, checkpoint: Path | None) -> int:
    model, cfg, vocab, answers = load_model_dir(model_dir)
    inputs = random_inputs(cfg, model.vocab_size)
    got = _activations(model, inputs)
    print(f"{model_dir}: valid ({cfg['image']['encoder']} / {cfg['text']['encoder']} / {cfg['fusion']['type']} / "
          f"{cfg['head']['type']}, {len(vocab)} tokens, {len(answers)} answers, "
          f"{sum(p.numel() for p in model.parameters())} parameters)")
    if checkpoint is None:
        bad = [name for name, v in got.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            print(f"FAIL: non-finite values in {', '.join(bad)}")
            return 1
        print("smoke forward: all outputs finite")
        return 0
    ref_model, ref_cfg, ref_vocab, ref_answers = load_checkpoint(checkpoint)
    if ref_cfg != cfg or ref_vocab != vocab or ref_answers != answers:
        print("FAIL: config, vocab or answers differ between the checkpoint and the directory")
        return 1
    worst, bad = compare_outputs(_activations(ref_model, inputs), got)
    print(f"max relative error vs {checkpoint.name}: {worst:.3e} (tolerance {CHECK_TOLERANCE:.0e})")
    if bad:
        print(f"FAIL: mismatch in {', '.join(bad)}")
        return 1
    print("OK")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="torch.save dict {config, state_dict, vocab, answers}")
    parser.add_argument("--out", type=Path, help="model directory to write from --checkpoint")
    parser.add_argument("--check", type=Path, metavar="DIR", help="model directory to validate and run")
    args = parser.parse_args(argv)
    if (args.out is None) == (args.check is None):
        parser.error("give exactly one of --out (with --checkpoint) or --check")
    try:
        if args.out is not None:
            if args.checkpoint is None:
                parser.error("--out needs --checkpoint")
            model, cfg, vocab, answers = load_checkpoint(args.checkpoint)
            save_model_dir(model, cfg, vocab, answers, args.out)
            print(f"wrote {args.out}")
            return 0
        return check_dir(args.check, args.checkpoint)
    except (ConfigError, ModelDirError, VocabError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

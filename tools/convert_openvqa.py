"""Convert an openvqa MCAN checkpoint into a vqa-engine model directory (docs/openvqa.md).

  python tools/convert_openvqa.py --checkpoint epoch13.pkl --answers answer_dict.json \\
      (--vocab token_to_ix.json | --questions q_train.json q_val.json ...) --out models/mcan-small

The configuration (hidden, ff, layers, embedding, box branch, pooling sizes, answers) is read from the
tensor shapes; the number of heads is not visible in any shape: it defaults to hidden / 64 (openvqa's small
512/8 and large 1024/16) and can be given with --heads. A checkpoint is a pickle: convert only files you trust.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from export import ModelDirError, save_model_dir  # noqa: E402
from openvqa_ref import PUNCTUATION, TO_SPACE, openvqa_build_vocab  # noqa: E402
from vqa_ref.config import ConfigError, make_config  # noqa: E402
from vqa_ref.model import VQAModel, load_spec_state_dict  # noqa: E402
from vqa_ref.tokenizer import PAD_TOKEN, UNK_TOKEN, VocabError  # noqa: E402

MAX_TOKENS = 14
LN_EPS = 1e-6

# openvqa tensor name (regular expression, after any "module." prefix) -> model.safetensors name.
# Linear layers and the embedding keep their [out, in] layout; LayerNorm a_2/b_2 become weight/bias.
_MHA = r"(?P<w>linear_(?:q|k|v|merge))\.(?P<p>weight|bias)"
NAME_MAP: list[tuple[str, str]] = [
    (r"embedding\.weight", "text.embedding.weight"),
    (r"lstm\.(?P<p>weight_ih|weight_hh|bias_ih|bias_hh)_l0", "text.lstm.{p}"),
    (r"(?:adapter\.frcn_linear|frcnfeat_linear|img_feat_linear)\.(?P<p>weight|bias)", "image.adapter.{p}"),
    (r"(?:adapter\.bbox_linear|bbox_feat_linear)\.(?P<p>weight|bias)", "image.box.{p}"),
    (r"backbone\.enc_list\.(?P<i>\d+)\.mhatt\." + _MHA, "fusion.text.{i}.att.{w}.{p}"),
    (r"backbone\.enc_list\.(?P<i>\d+)\.ffn\.mlp\.fc\.linear\.(?P<p>weight|bias)", "fusion.text.{i}.ffn.fc1.{p}"),
    (r"backbone\.enc_list\.(?P<i>\d+)\.ffn\.mlp\.linear\.(?P<p>weight|bias)", "fusion.text.{i}.ffn.fc2.{p}"),
    (r"backbone\.enc_list\.(?P<i>\d+)\.(?P<n>norm[12])\.(?P<p>a_2|b_2)", "fusion.text.{i}.{n}.{p}"),
    (r"backbone\.dec_list\.(?P<i>\d+)\.mhatt1\." + _MHA, "fusion.image.{i}.self_att.{w}.{p}"),
    (r"backbone\.dec_list\.(?P<i>\d+)\.mhatt2\." + _MHA, "fusion.image.{i}.cross_att.{w}.{p}"),
    (r"backbone\.dec_list\.(?P<i>\d+)\.ffn\.mlp\.fc\.linear\.(?P<p>weight|bias)", "fusion.image.{i}.ffn.fc1.{p}"),
    (r"backbone\.dec_list\.(?P<i>\d+)\.ffn\.mlp\.linear\.(?P<p>weight|bias)", "fusion.image.{i}.ffn.fc2.{p}"),
    (r"backbone\.dec_list\.(?P<i>\d+)\.(?P<n>norm[123])\.(?P<p>a_2|b_2)", "fusion.image.{i}.{n}.{p}"),
    (r"attflat_(?P<m>lang|img)\.mlp\.fc\.linear\.(?P<p>weight|bias)", "pool.{m}.fc1.{p}"),
    (r"attflat_(?P<m>lang|img)\.mlp\.linear\.(?P<p>weight|bias)", "pool.{m}.fc2.{p}"),
    (r"attflat_(?P<m>lang|img)\.linear_merge\.(?P<p>weight|bias)", "pool.{m}.merge.{p}"),
    (r"proj_norm\.(?P<p>a_2|b_2)", "head.norm.{p}"),
    (r"proj\.(?P<p>weight|bias)", "head.classifier.{p}"),
]
_PART_RENAME = {"linear_q": "q", "linear_k": "k", "linear_v": "v", "linear_merge": "o", "a_2": "weight",
                "b_2": "bias", "lang": "text", "img": "image"}
_COMPILED = [(re.compile(pattern + r"\Z"), target) for pattern, target in NAME_MAP]


class ConvertError(ValueError):
    """The inputs are not an openvqa MCAN checkpoint with matching dictionaries."""


def map_name(name: str) -> str:
    """openvqa tensor name -> model.safetensors name; ConvertError for a name outside the table."""
    for pattern, target in _COMPILED:
        m = pattern.match(name)
        if m:
            parts = {k: _PART_RENAME.get(v, v) for k, v in m.groupdict().items()}
            return target.format(**parts)
    raise ConvertError(f"tensor {name!r}: not part of an openvqa MCAN network (no mapping)")


def load_openvqa_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The checkpoint's state_dict (legacy or zip pickle), without DataParallel's "module." prefix."""
    try:
        ckpt = torch.load(str(path), map_location="cpu")  # a pickle: load only checkpoints you trust
    except Exception as e:  # torch raises many types for a damaged or foreign file
        raise ConvertError(f"{path}: cannot load as a PyTorch checkpoint: {e}") from e
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ConvertError(f"{path}: expected a dict with a 'state_dict' entry (openvqa's checkpoint layout)")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key[len("module."):] if key.startswith("module.") else key
        if not isinstance(value, torch.Tensor):
            raise ConvertError(f"{path}: state_dict entry {key!r} is not a tensor")
        out[name] = value.detach().to(torch.float32)
    return out


def _shape(state: dict[str, torch.Tensor], name: str) -> tuple[int, ...]:
    if name not in state:
        raise ConvertError(f"missing tensor {name!r}")
    return tuple(state[name].shape)


def _adapter_name(state: dict[str, torch.Tensor]) -> str:
    for prefix in ("adapter.frcn_linear", "frcnfeat_linear", "img_feat_linear"):
        if f"{prefix}.weight" in state:
            return prefix
    raise ConvertError("missing the image adapter (adapter.frcn_linear.weight)")


def infer_config(state: dict[str, torch.Tensor], heads: int | None, max_regions: int, name: str) -> dict:
    """Our config.json from the tensor shapes (docs/openvqa.md, "Configuration")."""
    vocab_size, embed = _shape(state, "embedding.weight")
    hidden = _shape(state, "lstm.weight_hh_l0")[1]
    layers = len({k.split(".")[2] for k in state if k.startswith("backbone.enc_list.")})
    dec_layers = len({k.split(".")[2] for k in state if k.startswith("backbone.dec_list.")})
    if layers == 0 or layers != dec_layers:
        raise ConvertError(f"expected as many encoder as decoder layers (>= 1), got {layers} and {dec_layers}")
    ff = _shape(state, "backbone.enc_list.0.ffn.mlp.fc.linear.weight")[0]
    mlp_hidden = _shape(state, "attflat_img.mlp.fc.linear.weight")[0]
    glimpses = _shape(state, "attflat_img.mlp.linear.weight")[0]
    out_dim = _shape(state, "attflat_img.linear_merge.weight")[0]
    box_name = next((p for p in ("adapter.bbox_linear", "bbox_feat_linear") if f"{p}.weight" in state), None)
    box_dim = _shape(state, f"{box_name}.weight")[0] if box_name else 2048
    adapter_in = _shape(state, f"{_adapter_name(state)}.weight")[1]
    feature_dim = adapter_in - (box_dim if box_name else 0)
    if feature_dim < 1:
        raise ConvertError(f"adapter input {adapter_in} is not larger than the box branch ({box_dim})")
    if heads is None:
        if hidden % 64:
            raise ConvertError(f"hidden size {hidden} is not a multiple of 64: give the number of heads (--heads)")
        heads = hidden // 64
    try:
        return make_config("regions", "lstm", "mcan", "classifier", overrides={
            "name": name,
            "image.regions": {"feature_dim": feature_dim, "max_regions": max_regions,
                              "box_features": box_name is not None, "box_dim": box_dim},
            "text.embed_dim": embed,
            "text.tokenizer": {"lowercase": True, "remove": PUNCTUATION, "to_space": TO_SPACE,
                               "max_length": MAX_TOKENS, "pad_id": 0, "unk_id": 1},
            "fusion": {"hidden": hidden, "heads": heads, "ff": ff, "layers": layers, "masked_row": "uniform"},
            "layer_norm": {"variant": "unbiased_std", "eps": LN_EPS},
            "pool": {"mlp_hidden": mlp_hidden, "glimpses": glimpses, "out_dim": out_dim},
            "head": {"activation": "sigmoid"},
        })
    except ConfigError as e:
        raise ConvertError(f"inferred configuration is invalid: {e}") from e


def convert_vocab(token_to_ix: Any, vocab_size: int) -> dict[str, int]:
    """openvqa's {PAD: 0, UNK: 1, CLS: 2, word: id, ...} -> ours (<pad>, <unk>; CLS keeps id 2, unused)."""
    if not isinstance(token_to_ix, dict):
        raise ConvertError("token dictionary: expected a JSON object {token: id}")
    if token_to_ix.get("PAD") != 0 or token_to_ix.get("UNK") != 1:
        raise ConvertError("token dictionary: expected PAD at id 0 and UNK at id 1 (openvqa's layout)")
    if len(token_to_ix) != vocab_size:
        raise ConvertError(f"token dictionary has {len(token_to_ix)} entries, the embedding has {vocab_size} rows")
    vocab = {PAD_TOKEN if k == "PAD" else UNK_TOKEN if k == "UNK" else k: v for k, v in token_to_ix.items()}
    if len(vocab) != len(token_to_ix):
        raise ConvertError(f"token dictionary already holds {PAD_TOKEN!r} or {UNK_TOKEN!r}")
    return vocab


def convert_answers(answer_dict: Any, num_answers: int) -> list[str]:
    """openvqa's answer_dict.json [ans_to_ix, ix_to_ans] -> answers.json (entry i = answer i)."""
    if not (isinstance(answer_dict, list) and len(answer_dict) == 2 and all(isinstance(d, dict) for d in answer_dict)):
        raise ConvertError("answer dictionary: expected [ans_to_ix, ix_to_ans]")
    ans_to_ix, ix_to_ans = answer_dict
    if len(ix_to_ans) != num_answers:
        raise ConvertError(f"answer dictionary has {len(ix_to_ans)} answers, the classifier has {num_answers}")
    try:
        answers = [ix_to_ans[str(i)] for i in range(num_answers)]
    except KeyError as e:
        raise ConvertError(f"answer dictionary: ix_to_ans lacks index {e}") from e
    for i, a in enumerate(answers):
        if ans_to_ix.get(a) != i:
            raise ConvertError(f"answer dictionary: ans_to_ix[{a!r}] is {ans_to_ix.get(a)!r}, ix_to_ans says {i}")
    return answers


def convert(state: dict[str, torch.Tensor], token_to_ix: dict[str, int], answer_dict: Any, out: Path,
            heads: int | None = None, max_regions: int = 100, name: str = "openvqa-mcan") -> Path:
    cfg = infer_config(state, heads, max_regions, name)
    tensors = {map_name(k): v for k, v in state.items()}
    model = VQAModel(cfg, state["embedding.weight"].shape[0], state["proj.weight"].shape[0])
    try:
        load_spec_state_dict(model, tensors)
    except ValueError as e:
        raise ConvertError(str(e)) from e
    vocab = convert_vocab(token_to_ix, model.vocab_size)
    answers = convert_answers(answer_dict, model.num_answers)
    return save_model_dir(model, cfg, vocab, answers, out)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConvertError(f"{path}: cannot read JSON: {e}") from e


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="openvqa checkpoint (.pkl)")
    parser.add_argument("--answers", type=Path, required=True, help="openvqa answer_dict.json")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--vocab", type=Path, help="token -> index JSON (openvqa's token_to_ix)")
    source.add_argument("--questions", type=Path, nargs="+",
                        help="VQA question files, in openvqa's order (train, val, test, vg), to rebuild the dictionary")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--heads", type=int, help="attention heads (default hidden / 64)")
    parser.add_argument("--max-regions", type=int, default=100, help="regions per image (default 100)")
    parser.add_argument("--name", default="openvqa-mcan", help="config.json name")
    args = parser.parse_args(argv)
    try:
        state = load_openvqa_state_dict(args.checkpoint)
        if args.vocab is not None:
            token_to_ix = _read_json(args.vocab)
        else:
            questions = [q["question"] for path in args.questions for q in _read_json(path)["questions"]]
            token_to_ix = openvqa_build_vocab(questions)
        convert(state, token_to_ix, _read_json(args.answers), args.out, args.heads, args.max_regions, args.name)
    except (ConvertError, ConfigError, ModelDirError, VocabError, KeyError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""config.json of a model directory: loading, validation (docs/model-format.md §2) and construction."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any, Callable

FORMAT = "vqa-engine"
FORMAT_VERSION = 1

IMAGE_ENCODERS = ("cnn", "resnet", "regions")
GRID_ENCODERS = ("cnn", "resnet")
TEXT_ENCODERS = ("lstm", "transformer")
FUSION_TYPES = ("mcan", "simple")
HEAD_TYPES = ("classifier", "generate")


class ConfigError(ValueError):
    """A config.json (or a config dict) does not follow docs/model-format.md §2."""


def _show(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


class _Checker:
    """Walks one config dict; every failure names the source file and the key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, expected: str, value: Any) -> None:
        raise ConfigError(f"{self.source}: {path}: expected {expected}, got {_show(value)}")

    def obj(self, value: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
        if not isinstance(value, dict):
            self.fail(path or "<root>", "a JSON object", value)
        prefix = f"{path}." if path else ""
        for key in value:
            if key not in required and key not in optional:
                allowed = ", ".join(required + optional)
                raise ConfigError(f"{self.source}: {prefix}{key}: unknown key (allowed here: {allowed})")
        for key in required:
            if key not in value:
                raise ConfigError(f"{self.source}: {prefix}{key}: missing required key")
        return value

    def int_(self, value: Any, path: str, lo: int | None = None, allowed: tuple[int, ...] | None = None,
             what: str | None = None) -> int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and allowed is not None:
            ok = value in allowed
        if ok and lo is not None:
            ok = value >= lo
        if not ok:
            if what is None:
                if allowed is not None:
                    what = "one of " + ", ".join(str(a) for a in allowed)
                elif lo is not None:
                    what = f"an int >= {lo}"
                else:
                    what = "an int"
            self.fail(path, what, value)
        return value

    def float_(self, value: Any, path: str, positive: bool = False) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and positive:
            ok = value > 0
        if not ok:
            self.fail(path, "a finite number > 0" if positive else "a finite number", value)
        return float(value)

    def bool_(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            self.fail(path, "true or false", value)
        return value

    def str_(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            self.fail(path, "a string", value)
        return value

    def enum(self, value: Any, path: str, allowed: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in allowed:
            self.fail(path, "one of " + ", ".join(f'"{a}"' for a in allowed), value)
        return value

    def floats3(self, value: Any, path: str, positive: bool = False) -> None:
        if not isinstance(value, list) or len(value) != 3:
            self.fail(path, "a list of 3 numbers", value)
        for i, v in enumerate(value):
            self.float_(v, f"{path}[{i}]", positive)

    def ascii_bytes(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value.isascii():
            self.fail(path, "a string of ASCII characters", value)
        return value


def _check_image(c: _Checker, image: Any) -> None:
    image = c.obj(image, "image", ("encoder",), ("input", "cnn", "resnet", "regions"))
    encoder = c.enum(image["encoder"], "image.encoder", IMAGE_ENCODERS)
    if encoder not in image:
        raise ConfigError(f"{c.source}: image.{encoder}: missing required key (image.encoder is \"{encoder}\")")
    if encoder in GRID_ENCODERS and "input" not in image:
        raise ConfigError(f"{c.source}: image.input: missing required key (required by grid encoder \"{encoder}\")")
    if "input" in image:
        inp = c.obj(image["input"], "image.input",
                    ("height", "width", "channel_order", "resize", "mean", "std"))
        c.int_(inp["height"], "image.input.height", lo=1)
        c.int_(inp["width"], "image.input.width", lo=1)
        c.enum(inp["channel_order"], "image.input.channel_order", ("RGB", "BGR"))
        c.enum(inp["resize"], "image.input.resize", ("stretch",))
        c.floats3(inp["mean"], "image.input.mean")
        c.floats3(inp["std"], "image.input.std", positive=True)
    if "cnn" in image:
        cnn = c.obj(image["cnn"], "image.cnn", ("channels", "batch_norm", "bn_eps"))
        channels = cnn["channels"]
        if not isinstance(channels, list) or not channels:
            c.fail("image.cnn.channels", "a list of >= 1 ints", channels)
        for i, ch in enumerate(channels):
            c.int_(ch, f"image.cnn.channels[{i}]", lo=1)
        c.bool_(cnn["batch_norm"], "image.cnn.batch_norm")
        c.float_(cnn["bn_eps"], "image.cnn.bn_eps", positive=True)
        if encoder == "cnn":
            need = 2 ** len(channels)
            for side in ("height", "width"):
                value = image["input"][side]
                if value < need:
                    c.fail(f"image.input.{side}", f"an int >= {need} (2^{len(channels)} for "
                           f"{len(channels)} cnn blocks, each halving the size)", value)
    if "resnet" in image:
        resnet = c.obj(image["resnet"], "image.resnet", ("depth", "base_width", "bn_eps"))
        c.int_(resnet["depth"], "image.resnet.depth", allowed=(18, 34, 50))
        c.int_(resnet["base_width"], "image.resnet.base_width", lo=1)
        c.float_(resnet["bn_eps"], "image.resnet.bn_eps", positive=True)
    if "regions" in image:
        regions = c.obj(image["regions"], "image.regions",
                        ("feature_dim", "max_regions", "box_features", "box_dim"))
        c.int_(regions["feature_dim"], "image.regions.feature_dim", lo=1)
        c.int_(regions["max_regions"], "image.regions.max_regions", lo=1)
        c.bool_(regions["box_features"], "image.regions.box_features")
        c.int_(regions["box_dim"], "image.regions.box_dim", lo=1)


def _check_tokenizer(c: _Checker, tok: Any) -> None:
    p = "text.tokenizer"
    tok = c.obj(tok, p, ("lowercase", "remove", "to_space", "max_length", "pad_id", "unk_id"))
    c.bool_(tok["lowercase"], f"{p}.lowercase")
    remove = c.ascii_bytes(tok["remove"], f"{p}.remove")
    to_space = c.ascii_bytes(tok["to_space"], f"{p}.to_space")
    both = sorted(set(remove) & set(to_space))
    if both:
        c.fail(f"{p}.to_space", f"no character also in {p}.remove (both hold {_show(''.join(both))})", to_space)
    c.int_(tok["max_length"], f"{p}.max_length", lo=1)
    pad_id = c.int_(tok["pad_id"], f"{p}.pad_id", lo=0)
    c.int_(tok["unk_id"], f"{p}.unk_id", lo=0)
    if tok["unk_id"] == pad_id:
        c.fail(f"{p}.unk_id", f"an int >= 0 different from {p}.pad_id={pad_id}", tok["unk_id"])


def _check_text(c: _Checker, text: Any, hidden: int) -> None:
    text = c.obj(text, "text", ("encoder", "embed_dim", "layers", "tokenizer"))
    encoder = c.enum(text["encoder"], "text.encoder", TEXT_ENCODERS)
    if encoder == "transformer":
        c.int_(text["embed_dim"], "text.embed_dim", allowed=(hidden,),
               what=f"an int equal to fusion.hidden={hidden} (transformer text encoder)")
        c.int_(text["layers"], "text.layers", lo=0)
    else:
        c.int_(text["embed_dim"], "text.embed_dim", lo=1)
        c.int_(text["layers"], "text.layers", allowed=(0,), what="0 (lstm text encoder)")
    _check_tokenizer(c, text["tokenizer"])


def _check_fusion(c: _Checker, fusion: Any) -> int:
    fusion = c.obj(fusion, "fusion", ("type", "hidden", "heads", "ff", "layers", "masked_row"))
    c.enum(fusion["type"], "fusion.type", FUSION_TYPES)
    hidden = c.int_(fusion["hidden"], "fusion.hidden", lo=1)
    heads = fusion["heads"]
    if not (isinstance(heads, int) and not isinstance(heads, bool) and heads >= 1 and hidden % heads == 0):
        c.fail("fusion.heads", f"an int >= 1 dividing fusion.hidden={hidden}", heads)
    c.int_(fusion["ff"], "fusion.ff", lo=1)
    c.int_(fusion["layers"], "fusion.layers", lo=1)
    c.enum(fusion["masked_row"], "fusion.masked_row", ("zero", "uniform"))
    return hidden


def _check_head(c: _Checker, head: Any) -> None:
    if not isinstance(head, dict):
        c.fail("head", "a JSON object", head)
    kind = c.enum(head.get("type"), "head.type", HEAD_TYPES) if "type" in head else None
    if kind is None:
        raise ConfigError(f"{c.source}: head.type: missing required key")
    if kind == "classifier":
        head = c.obj(head, "head", ("type", "activation"))
        c.enum(head["activation"], "head.activation", ("softmax", "sigmoid"))
        return
    head = c.obj(head, "head", ("type", "cell", "embed_dim", "hidden", "max_length", "bos_id", "eos_id"),
                 ("activation",))
    if "activation" in head:
        c.enum(head["activation"], "head.activation", ("softmax", "sigmoid"))
    c.enum(head["cell"], "head.cell", ("gru", "lstm"))
    c.int_(head["embed_dim"], "head.embed_dim", lo=1)
    c.int_(head["hidden"], "head.hidden", lo=1)
    c.int_(head["max_length"], "head.max_length", lo=1)
    c.int_(head["bos_id"], "head.bos_id", lo=0)
    c.int_(head["eos_id"], "head.eos_id", lo=0)


def validate_config(cfg: Any, source: str = "config.json") -> dict:
    """Check `cfg` against docs/model-format.md §2; return it unchanged or raise ConfigError."""
    c = _Checker(source)
    root = c.obj(cfg, "", ("format", "format_version", "name", "image", "text", "fusion", "layer_norm",
                           "pool", "head"))
    if root["format"] != FORMAT:
        c.fail("format", f'"{FORMAT}"', root["format"])
    version = root["format_version"]
    if not (isinstance(version, int) and not isinstance(version, bool)):
        c.fail("format_version", "an int", version)
    if version != FORMAT_VERSION:
        raise ConfigError(f"{source}: format_version: this reader knows version {FORMAT_VERSION} only, "
                          f"got {_show(version)}")
    c.str_(root["name"], "name")
    hidden = _check_fusion(c, root["fusion"])
    _check_image(c, root["image"])
    _check_text(c, root["text"], hidden)
    ln = c.obj(root["layer_norm"], "layer_norm", ("variant", "eps"))
    c.enum(ln["variant"], "layer_norm.variant", ("standard", "unbiased_std"))
    c.float_(ln["eps"], "layer_norm.eps", positive=True)
    pool = c.obj(root["pool"], "pool", ("mlp_hidden", "glimpses", "out_dim"))
    for key in ("mlp_hidden", "glimpses", "out_dim"):
        c.int_(pool[key], f"pool.{key}", lo=1)
    if ln["variant"] == "unbiased_std":  # std over d - 1 degrees of freedom needs d >= 2
        for path, value in (("fusion.hidden", hidden), ("pool.out_dim", pool["out_dim"])):
            c.int_(value, path, lo=2, what="an int >= 2 (layer_norm.variant \"unbiased_std\")")
    _check_head(c, root["head"])
    return cfg


def reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    """json.loads object_pairs_hook: a key written twice is an error, not "the last one wins"."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def load_config(path: str | Path) -> dict:
    """Read and validate a config.json file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not valid UTF-8: {e}") from e
    try:
        cfg = json.loads(text, object_pairs_hook=reject_duplicate_keys)
    except ValueError as e:  # includes json.JSONDecodeError
        raise ConfigError(f"{path}: invalid JSON: {e}") from e
    return validate_config(cfg, source=path.name)


def _image_block(encoder: str) -> dict:
    image: dict[str, Any] = {"encoder": encoder}
    if encoder in GRID_ENCODERS:
        image["input"] = {"height": 64, "width": 64, "channel_order": "RGB", "resize": "stretch",
                          "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    if encoder == "cnn":
        image["cnn"] = {"channels": [16, 32, 64], "batch_norm": True, "bn_eps": 1e-5}
    elif encoder == "resnet":
        image["resnet"] = {"depth": 18, "base_width": 64, "bn_eps": 1e-5}
    elif encoder == "regions":
        image["regions"] = {"feature_dim": 2048, "max_regions": 100, "box_features": False, "box_dim": 1024}
    else:
        raise ConfigError(f"make_config: image_encoder: expected one of {', '.join(IMAGE_ENCODERS)}, "
                          f"got {_show(encoder)}")
    return image


def _head_block(kind: str) -> dict:
    if kind == "classifier":
        return {"type": "classifier", "activation": "softmax"}
    if kind == "generate":
        return {"type": "generate", "cell": "gru", "embed_dim": 32, "hidden": 64, "max_length": 4,
                "bos_id": 0, "eos_id": 1}
    raise ConfigError(f"make_config: head: expected one of {', '.join(HEAD_TYPES)}, got {_show(kind)}")


def set_path(cfg: dict, path: str, value: Any) -> None:
    """Set `cfg[a][b][c] = value` for path "a.b.c"; a dict value is merged into an existing dict."""
    keys = path.split(".")
    node = cfg
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    last = keys[-1]
    if isinstance(value, dict) and isinstance(node.get(last), dict):
        for k, v in value.items():
            set_path(node[last], k, v)
    else:
        node[last] = copy.deepcopy(value)


def make_config(image_encoder: str = "cnn", text_encoder: str = "lstm", fusion: str = "mcan",
                head: str = "classifier", overrides: dict[str, Any] | None = None,
                **kwargs: Any) -> dict:
    """A valid config dict for the chosen variant, with defaults derived from fusion.hidden.

    Overrides are key paths, either in `overrides` with dots (`{"fusion.hidden": 32}`) or as keyword
    arguments with double underscores (`fusion__hidden=32`, `image__input__height=32`). A dict value is
    merged into the existing block (`image__cnn={"channels": [8, 16]}` keeps batch_norm and bn_eps).
    Unless overridden: text.embed_dim = hidden for the transformer encoder, fusion.ff = 2 * hidden,
    pool.mlp_hidden = hidden, pool.out_dim = 2 * hidden. The result is validated before it is returned.
    """
    if text_encoder not in TEXT_ENCODERS:
        raise ConfigError(f"make_config: text_encoder: expected one of {', '.join(TEXT_ENCODERS)}, "
                          f"got {_show(text_encoder)}")
    if fusion not in FUSION_TYPES:
        raise ConfigError(f"make_config: fusion: expected one of {', '.join(FUSION_TYPES)}, got {_show(fusion)}")
    paths: dict[str, Any] = dict(overrides or {})
    paths.update({k.replace("__", "."): v for k, v in kwargs.items()})
    cfg: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": f"{image_encoder}-{text_encoder}-{fusion}-{head}",
        "image": _image_block(image_encoder),
        "text": {"encoder": text_encoder, "embed_dim": 32, "layers": 0 if text_encoder == "lstm" else 1,
                 "tokenizer": {"lowercase": True, "remove": ".,'!?\"()*#:;", "to_space": "-/",
                               "max_length": 14, "pad_id": 0, "unk_id": 1}},
        "fusion": {"type": fusion, "hidden": 64, "heads": 4, "ff": None, "layers": 2, "masked_row": "zero"},
        "layer_norm": {"variant": "standard", "eps": 1e-5},
        "pool": {"mlp_hidden": None, "glimpses": 1, "out_dim": None},
        "head": _head_block(head),
    }
    for path, value in paths.items():
        set_path(cfg, path, value)
    hidden = cfg["fusion"]["hidden"]
    derived: dict[str, Callable[[], Any]] = {
        "fusion.ff": lambda: 2 * hidden,
        "pool.mlp_hidden": lambda: hidden,
        "pool.out_dim": lambda: 2 * hidden,
    }
    for path, default in derived.items():
        section, key = path.split(".")
        if cfg[section][key] is None:
            cfg[section][key] = default()
    if text_encoder == "transformer" and "text.embed_dim" not in paths:
        cfg["text"]["embed_dim"] = hidden
    return validate_config(cfg, source="make_config")


def config_to_json(cfg: dict) -> str:
    """Pretty-printed, key-sorted JSON text of a config (stable bytes for the same config)."""
    return json.dumps(cfg, indent=2, sort_keys=True, ensure_ascii=True) + "\n"

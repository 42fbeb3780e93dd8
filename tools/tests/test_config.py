from __future__ import annotations

import copy
import json

import pytest
from conftest import tiny_config
from vqa_ref.config import ConfigError, config_to_json, load_config, make_config, validate_config


@pytest.mark.parametrize("image", ["cnn", "resnet", "regions"])
@pytest.mark.parametrize("text", ["lstm", "transformer"])
@pytest.mark.parametrize("head", ["classifier", "generate"])
def test_make_config_is_valid(image: str, text: str, head: str) -> None:
    cfg = make_config(image, text, "simple", head)
    assert validate_config(cfg) is cfg
    assert cfg["image"]["encoder"] == image and image in cfg["image"]
    if text == "transformer":
        assert cfg["text"]["embed_dim"] == cfg["fusion"]["hidden"]


def test_make_config_overrides() -> None:
    cfg = make_config("cnn", fusion__hidden=32, image__cnn={"channels": [8]}, overrides={"fusion.heads": 8})
    assert cfg["fusion"]["hidden"] == 32 and cfg["fusion"]["heads"] == 8
    assert cfg["image"]["cnn"] == {"channels": [8], "batch_norm": True, "bn_eps": 1e-5}
    assert cfg["pool"]["out_dim"] == 64 and cfg["fusion"]["ff"] == 64
    with pytest.raises(ConfigError, match="fusion.heads"):
        make_config(fusion__heads=5)


def _set(cfg: dict, path: str, value: object) -> dict:
    cfg = copy.deepcopy(cfg)
    *parents, last = path.split(".")
    node = cfg
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return cfg


BAD = [  # (base config kind, key path, bad value or KeyError for "missing", text the message must contain)
    ("cnn", "fusion.heads", 5, "fusion.heads: expected an int >= 1 dividing fusion.hidden=16, got 5"),
    ("cnn", "format", "vqa", "format: expected"),
    ("cnn", "format_version", 2, "format_version: this reader knows version 1"),
    ("cnn", "format_version", "1", "format_version: expected an int"),
    ("cnn", "fusion.hidden", 16.0, "fusion.hidden: expected an int >= 1"),
    ("cnn", "fusion.type", "mcan2", "fusion.type: expected one of"),
    ("cnn", "fusion.masked_row", "nan", "fusion.masked_row"),
    ("cnn", "fusion.extra", 1, "fusion.extra: unknown key"),
    ("cnn", "fusion.ff", KeyError, "fusion.ff: missing required key"),
    ("cnn", "image.input.std", [0.2, 0.0, 0.2], "image.input.std[1]: expected a finite number > 0"),
    ("cnn", "image.input.mean", [0.5, 0.5], "image.input.mean: expected a list of 3 numbers"),
    ("cnn", "image.input.channel_order", "RGBA", "image.input.channel_order"),
    ("cnn", "image.input.resize", "crop", "image.input.resize"),
    ("cnn", "image.input.height", 2, "image.input.height: expected an int >= 4"),
    ("cnn", "image.input", KeyError, "image.input: missing required key"),
    ("cnn", "image.cnn", KeyError, "image.cnn: missing required key"),
    ("cnn", "image.cnn.channels", [], "image.cnn.channels: expected a list of >= 1 ints"),
    ("cnn", "image.cnn.batch_norm", 1, "image.cnn.batch_norm: expected true or false"),
    ("resnet", "image.resnet.depth", 101, "image.resnet.depth: expected one of 18, 34, 50"),
    ("regions", "image.regions.box_features", "yes", "image.regions.box_features"),
    ("cnn", "text.encoder", "gru", "text.encoder"),
    ("cnn", "text.layers", 2, "text.layers: expected 0 (lstm text encoder)"),
    ("transformer", "text.embed_dim", 8, "text.embed_dim: expected an int equal to fusion.hidden=16"),
    ("cnn", "text.tokenizer.unk_id", 0, "text.tokenizer.unk_id: expected an int >= 0 different from"),
    ("cnn", "text.tokenizer.max_length", 0, "text.tokenizer.max_length: expected an int >= 1"),
    ("cnn", "text.tokenizer.remove", "é", "text.tokenizer.remove: expected a string of ASCII characters"),
    ("cnn", "text.tokenizer.to_space", "-?", "text.tokenizer.to_space: expected no character also in"),
    ("cnn", "layer_norm.variant", "rms", "layer_norm.variant"),
    ("cnn", "layer_norm.eps", 0, "layer_norm.eps: expected a finite number > 0"),
    ("cnn", "pool.glimpses", 0, "pool.glimpses: expected an int >= 1"),
    ("cnn", "head.activation", "relu", "head.activation"),
    ("cnn", "head.cell", "gru", "head.cell: unknown key"),
    ("generate", "head.bos_id", -1, "head.bos_id: expected an int >= 0"),
    ("generate", "head.cell", KeyError, "head.cell: missing required key"),
    ("cnn", "name", 3, "name: expected a string"),
    ("unbiased", "pool.out_dim", 1, "pool.out_dim: expected an int >= 2 (layer_norm.variant"),
]


@pytest.mark.parametrize("kind,path,value,message", BAD, ids=[f"{b[1]}={b[2]!r}" for b in BAD])
def test_bad_config_names_the_key(kind: str, path: str, value: object, message: str) -> None:
    base = {"cnn": tiny_config("cnn"), "resnet": tiny_config("resnet"), "regions": tiny_config("regions"),
            "transformer": tiny_config("cnn", "transformer"), "generate": tiny_config("cnn", head="generate"),
            "unbiased": tiny_config(layer_norm__variant="unbiased_std")}[kind]
    with pytest.raises(ConfigError) as err:
        validate_config(_set(base, path, value))
    assert message in str(err.value)
    assert str(err.value).startswith("config.json: ")


def test_other_encoder_blocks_are_optional_but_checked() -> None:
    cfg = tiny_config("regions")
    assert "input" not in cfg["image"]
    cfg["image"]["cnn"] = {"channels": [4], "batch_norm": False, "bn_eps": 1e-5}
    validate_config(cfg)
    cfg["image"]["cnn"]["channels"] = [0]
    with pytest.raises(ConfigError, match=r"image\.cnn\.channels\[0\]"):
        validate_config(cfg)


def test_load_config_file_errors(tmp_path) -> None:
    path = tmp_path / "config.json"
    path.write_text(config_to_json(tiny_config()))
    assert load_config(path) == tiny_config()
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="invalid JSON"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.json")
    path.write_text('{"format": "vqa-engine", "format": "vqa-engine"}')
    with pytest.raises(ConfigError, match="appears twice"):
        load_config(path)
    path.write_text(json.dumps([1, 2]))
    with pytest.raises(ConfigError, match="expected a JSON object"):
        load_config(path)

"""Shared fixtures: tools/ on sys.path, tiny configs and models."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

TOOLS = Path(__file__).resolve().parents[1]
REPO = TOOLS.parent
sys.path.insert(0, str(TOOLS))

from vqa_ref.config import make_config  # noqa: E402

TINY = {"fusion": {"hidden": 16, "heads": 2, "ff": 24, "layers": 1},
        "text": {"embed_dim": 8, "tokenizer": {"max_length": 6}},
        "pool": {"mlp_hidden": 8, "glimpses": 2, "out_dim": 12}}


def tiny_config(image: str = "cnn", text: str = "lstm", fusion: str = "mcan", head: str = "classifier",
                **overrides: object) -> dict:
    paths: dict[str, object] = dict(TINY)
    if image == "cnn":
        paths["image"] = {"input": {"height": 8, "width": 8}, "cnn": {"channels": [4, 8]}}
    elif image == "resnet":
        paths["image"] = {"input": {"height": 32, "width": 32}, "resnet": {"base_width": 4}}
    else:
        paths["image"] = {"regions": {"feature_dim": 6, "max_regions": 4, "box_features": True, "box_dim": 3}}
    if text == "transformer":
        paths["text"] = {"tokenizer": {"max_length": 6}}
    if head == "generate":
        paths["head"] = {"embed_dim": 6, "hidden": 8, "max_length": 3}
    paths.update({k.replace("__", "."): v for k, v in overrides.items()})
    return make_config(image, text, fusion, head, overrides=paths)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)

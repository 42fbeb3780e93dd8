"""PyTorch reference of the vqa-engine model family and its model-directory format (docs/model-format.md)."""

from vqa_ref.config import ConfigError, load_config, make_config, validate_config

__all__ = ["ConfigError", "load_config", "make_config", "validate_config"]

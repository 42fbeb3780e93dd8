"""The reference VQA model (docs/model-format.md §4-§8) and its tensor names in model.safetensors.

    model = VQAModel(cfg, vocab_size=len(vocab), num_answers=len(answers))
    logits = model(ids, lengths, images=images)                  # classifier head: [B, A]
    tokens, scores = model(ids, lengths, regions=feats)          # generate head: [B, T], [B]
    acts = model(ids, lengths, images=images, return_activations=True)   # dict of named tensors

Masks are bool with True = masked (excluded), as in PyTorch's key_padding_mask.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vqa_ref.config import validate_config
from vqa_ref.layers import (AttentionPool, CrossAttentionLayer, FusionSpec, GuidedAttentionLayer, LayerNorm,
                            SelfAttentionLayer)
from vqa_ref.resnet import ResNetTrunk

# PyTorch state_dict name -> model.safetensors name; the only renames of the format.
TORCH_TO_SPEC = {
    "text.lstm.weight_ih_l0": "text.lstm.weight_ih",
    "text.lstm.weight_hh_l0": "text.lstm.weight_hh",
    "text.lstm.bias_ih_l0": "text.lstm.bias_ih",
    "text.lstm.bias_hh_l0": "text.lstm.bias_hh",
}
SPEC_TO_TORCH = {v: k for k, v in TORCH_TO_SPEC.items()}
DROPPED_SUFFIX = ".num_batches_tracked"  # BatchNorm bookkeeping, not part of the format

UNFINISHED = -1  # value of `generated` after the decoder has stopped (eos emitted)


class CNNBlock(nn.Module):
    """Conv 3x3 (bias) -> BatchNorm? -> ReLU -> MaxPool 2x2."""

    def __init__(self, cin: int, cout: int, batch_norm: bool, bn_eps: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(cout, eps=bn_eps) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.max_pool2d(F.relu(x), 2, 2)


class ImageEncoder(nn.Module):
    """§4: images [Bi, 3, h, w] or regions [Bi, N, F] (+ boxes5 [Bi, N, 5]) -> tokens [Bi, Ni, d], mask."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        image = cfg["image"]
        self.kind: str = image["encoder"]
        self.box_features = False
        if self.kind == "cnn":
            cnn = image["cnn"]
            chans = [3] + list(cnn["channels"])
            self.cnn = nn.ModuleList(CNNBlock(chans[i], chans[i + 1], cnn["batch_norm"], cnn["bn_eps"])
                                     for i in range(len(chans) - 1))
            channels = chans[-1]
        elif self.kind == "resnet":
            res = image["resnet"]
            self.resnet = ResNetTrunk(res["depth"], res["base_width"], res["bn_eps"])
            channels = self.resnet.out_channels
        else:
            reg = image["regions"]
            channels = reg["feature_dim"]
            self.box_features = bool(reg["box_features"])
            if self.box_features:
                self.box = nn.Linear(5, reg["box_dim"])
                channels += reg["box_dim"]
        self.adapter = nn.Linear(channels, cfg["fusion"]["hidden"])

    def trunk(self, images: torch.Tensor | None, regions: torch.Tensor | None,
              boxes5: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Trunk features [Bi, Ni, C_img] and mask [Bi, Ni] (True = masked)."""
        if self.kind == "regions":
            if regions is None:
                raise ValueError("regions encoder: `regions` [B, N, F] is required")
            mask = (regions == 0).all(dim=-1)
            feats = regions
            if self.box_features:
                if boxes5 is None:
                    raise ValueError("regions encoder with box_features: `boxes5` [B, N, 5] is required")
                feats = torch.cat([regions, self.box(boxes5)], dim=-1)
            return feats, mask
        if images is None:
            raise ValueError(f"{self.kind} encoder: `images` [B, 3, h, w] is required")
        x = images
        if self.kind == "cnn":
            for block in self.cnn:
                x = block(x)
        else:
            x = self.resnet(x)
        feats = x.flatten(2).transpose(1, 2)  # [Bi, h*w, C], token = y*w + x
        mask = torch.zeros(feats.shape[:2], dtype=torch.bool, device=feats.device)
        return feats, mask


class TextEncoder(nn.Module):
    """§5: ids [B, L], lengths [B] -> tokens [B, L, d], mask [B, L] (True = padding)."""

    def __init__(self, cfg: dict, vocab_size: int, spec: FusionSpec) -> None:
        super().__init__()
        text = cfg["text"]
        self.kind: str = text["encoder"]
        self.embedding = nn.Embedding(vocab_size, text["embed_dim"])
        if self.kind == "lstm":
            self.lstm = nn.LSTM(text["embed_dim"], spec.dim, num_layers=1, batch_first=True)
        else:
            self.position = nn.Embedding(text["tokenizer"]["max_length"], spec.dim)
            self.layers = nn.ModuleList(SelfAttentionLayer(spec) for _ in range(text["layers"]))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor,
                acts: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        steps = ids.shape[1]
        mask = torch.arange(steps, device=ids.device)[None, :] >= lengths[:, None]
        x = self.embedding(ids)
        acts["text_embedded"] = x
        if self.kind == "lstm":
            x, _ = self.lstm(x)  # zero initial state, over all L positions
        else:
            x = x + self.position.weight[:steps]
            for layer in self.layers:
                x = layer(x, mask)
        return x, mask


class ClassifierHead(nn.Module):
    def __init__(self, out_dim: int, num_answers: int, norm: LayerNorm) -> None:
        super().__init__()
        self.norm = norm
        self.classifier = nn.Linear(out_dim, num_answers)


class GenerateHead(nn.Module):
    """§8 greedy word decoder from the fused vector."""

    def __init__(self, cfg_head: dict, out_dim: int, num_answers: int, norm: LayerNorm) -> None:
        super().__init__()
        self.norm = norm
        self.cell_kind: str = cfg_head["cell"]
        self.max_length: int = cfg_head["max_length"]
        self.bos_id: int = cfg_head["bos_id"]
        self.eos_id: int = cfg_head["eos_id"]
        hidden = cfg_head["hidden"]
        self.init = nn.Linear(out_dim, hidden)
        self.embedding = nn.Embedding(num_answers, cfg_head["embed_dim"])
        cell = nn.GRUCell if self.cell_kind == "gru" else nn.LSTMCell
        self.cell = cell(cfg_head["embed_dim"], hidden)
        self.out = nn.Linear(hidden, num_answers)

    def _initial_state(self, fused: torch.Tensor) -> Any:
        h = torch.tanh(self.init(fused))
        return h if self.cell_kind == "gru" else (h, torch.zeros_like(h))

    def _step(self, token: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        state = self.cell(self.embedding(token), state)
        h = state if self.cell_kind == "gru" else state[0]
        return self.out(h), state

    def decoder_logits(self, fused: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: inputs [B, T] (starting with bos) -> logits [B, T, A] predicting the next word."""
        state = self._initial_state(fused)
        steps = []
        for t in range(inputs.shape[1]):
            logits, state = self._step(inputs[:, t], state)
            steps.append(logits)
        return torch.stack(steps, dim=1)

    def generate(self, fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Greedy decoding -> tokens [B, T] (UNFINISHED after eos), scores [B], step logits [B, T, A] (0 after eos)."""
        batch = fused.shape[0]
        steps = self.max_length
        tokens = torch.full((batch, steps), UNFINISHED, dtype=torch.long, device=fused.device)
        step_logits = torch.zeros(batch, steps, self.out.out_features, device=fused.device)
        scores = torch.ones(batch, device=fused.device)
        done = torch.zeros(batch, dtype=torch.bool, device=fused.device)
        token = torch.full((batch,), self.bos_id, dtype=torch.long, device=fused.device)
        state = self._initial_state(fused)
        for t in range(steps):
            logits, state = self._step(token, state)
            token = torch.argmax(logits, dim=-1)  # first maximum: ties go to the lower id
            prob = torch.softmax(logits, dim=-1).gather(1, token[:, None])[:, 0]
            active = ~done
            scores = torch.where(active, scores * prob, scores)
            tokens[:, t] = torch.where(active, token, tokens[:, t])
            step_logits[:, t] = torch.where(active[:, None], logits, step_logits[:, t])
            done = done | (token == self.eos_id)
            if bool(done.all()):
                break
        return tokens, scores, step_logits


class VQAModel(nn.Module):
    """The model family of docs/model-format.md; `cfg` a config dict (§2), sizes V and A from the vocab/answers.

    `dropout` (training only) adds parameter-free dropout modules; they are identity in eval mode and add
    no tensor names.
    """

    def __init__(self, cfg: dict, vocab_size: int, num_answers: int, dropout: float = 0.0) -> None:
        super().__init__()
        validate_config(cfg, source="VQAModel config")
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.num_answers = num_answers
        spec = FusionSpec(cfg, dropout)
        self.fusion_type: str = cfg["fusion"]["type"]
        self.image = ImageEncoder(cfg)
        self.text = TextEncoder(cfg, vocab_size, spec)
        self.fusion = nn.Module()
        layers = cfg["fusion"]["layers"]
        if self.fusion_type == "mcan":
            self.fusion.text = nn.ModuleList(SelfAttentionLayer(spec) for _ in range(layers))
            self.fusion.image = nn.ModuleList(GuidedAttentionLayer(spec) for _ in range(layers))
        else:
            self.fusion.text = nn.ModuleList(CrossAttentionLayer(spec) for _ in range(layers))
        pool = cfg["pool"]
        self.pool = nn.Module()
        for name in ("text", "image"):
            setattr(self.pool, name, AttentionPool(spec.dim, pool["mlp_hidden"], pool["glimpses"],
                                                   pool["out_dim"], spec.masked_row, dropout))
        norm = spec.norm(pool["out_dim"])
        self.head_type: str = cfg["head"]["type"]
        if self.head_type == "classifier":
            self.head: ClassifierHead | GenerateHead = ClassifierHead(pool["out_dim"], num_answers, norm)
        else:
            self.head = GenerateHead(cfg["head"], pool["out_dim"], num_answers, norm)
        self.eval()

    def encode_images(self, images: torch.Tensor | None = None, regions: torch.Tensor | None = None,
                      boxes5: torch.Tensor | None = None,
                      acts: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Image tokens [Bi, Ni, d] (after the adapter) and mask [Bi, Ni], once per distinct image."""
        feats, mask = self.image.trunk(images, regions, boxes5)
        tokens = self.image.adapter(feats)
        if acts is not None:
            acts.update({"image_trunk": feats, "image_tokens": tokens, "image_mask": mask})
        return tokens, mask

    def fuse(self, ids: torch.Tensor, lengths: torch.Tensor, images: torch.Tensor | None = None,
             regions: torch.Tensor | None = None, boxes5: torch.Tensor | None = None,
             image_index: torch.Tensor | None = None,
             acts: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """§4-§7: the fused vector f [B, out_dim] (after head.norm)."""
        acts = {} if acts is None else acts
        img_tokens, img_mask = self.encode_images(images, regions, boxes5, acts)
        if image_index is None:
            if img_tokens.shape[0] != ids.shape[0]:
                raise ValueError(f"image_index is required when the number of images ({img_tokens.shape[0]}) "
                                 f"differs from the number of questions ({ids.shape[0]})")
            image_index = torch.arange(ids.shape[0], device=ids.device)
        v, v_mask = img_tokens[image_index], img_mask[image_index]
        t, t_mask = self.text(ids, lengths, acts)
        acts.update({"text_tokens": t, "text_mask": t_mask})
        for i, layer in enumerate(self.fusion.text):
            t = layer(t, t_mask) if self.fusion_type == "mcan" else layer(t, v, v_mask)
            acts[f"fusion.text.{i}"] = t
        if self.fusion_type == "mcan":
            for i, layer in enumerate(self.fusion.image):
                v = layer(v, v_mask, t, t_mask)
                acts[f"fusion.image.{i}"] = v
        pooled_text = self.pool.text(t, t_mask)
        pooled_image = self.pool.image(v, v_mask)
        fused = self.head.norm(pooled_text + pooled_image)
        acts.update({"pooled_text": pooled_text, "pooled_image": pooled_image, "fused": fused})
        return fused

    def decoder_logits(self, fused: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Generate head, training: teacher-forced logits [B, T, A] for decoder inputs [B, T] (bos first)."""
        if not isinstance(self.head, GenerateHead):
            raise ValueError("decoder_logits needs head.type \"generate\"")
        return self.head.decoder_logits(fused, inputs)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, images: torch.Tensor | None = None,
                regions: torch.Tensor | None = None, boxes5: torch.Tensor | None = None,
                image_index: torch.Tensor | None = None, return_activations: bool = False) -> Any:
        """Classifier: logits [B, A]. Generate: (tokens [B, T], scores [B]). Or the dict of activations."""
        acts: dict[str, torch.Tensor] = {}
        fused = self.fuse(ids, lengths, images, regions, boxes5, image_index, acts)
        if isinstance(self.head, ClassifierHead):
            logits = self.head.classifier(fused)
            acts["logits"] = logits
            return acts if return_activations else logits
        tokens, scores, step_logits = self.head.generate(fused)
        acts.update({"generated": tokens, "scores": scores, "step_logits": step_logits})
        return acts if return_activations else (tokens, scores)


def answer_text(tokens: list[int], answers: list[str], bos_id: int, eos_id: int) -> str:
    """Generated words up to eos, without bos/eos, joined by one space."""
    words = []
    for tok in tokens:
        if tok == eos_id or tok == UNFINISHED:
            break
        if tok != bos_id:
            words.append(answers[tok])
    return " ".join(words)


def to_spec_name(torch_name: str) -> str:
    return TORCH_TO_SPEC.get(torch_name, torch_name)


def spec_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors under their model.safetensors names (no BatchNorm num_batches_tracked)."""
    return {to_spec_name(k): v for k, v in model.state_dict().items() if not k.endswith(DROPPED_SUFFIX)}


def expected_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in spec_state_dict(model).items()}


def load_spec_state_dict(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Load tensors named as in model.safetensors (or as in model.state_dict()); strict on names and shapes."""
    own = model.state_dict()
    expected = expected_shapes(model)
    renamed: dict[str, torch.Tensor] = {}
    for name, value in tensors.items():
        if name.endswith(DROPPED_SUFFIX) and name in own:
            continue
        spec = to_spec_name(name)
        if spec not in expected:
            raise ValueError(f"unexpected tensor {name!r}: the config implies no such tensor")
        if tuple(value.shape) != expected[spec]:
            raise ValueError(f"tensor {spec!r}: expected shape {list(expected[spec])}, got {list(value.shape)}")
        renamed[SPEC_TO_TORCH.get(spec, spec)] = value
    missing = sorted(to_spec_name(k) for k in own if not k.endswith(DROPPED_SUFFIX) and k not in renamed)
    if missing:
        raise ValueError(f"missing tensor(s): {', '.join(missing[:8])}" + (" ..." if len(missing) > 8 else ""))
    with torch.no_grad():
        for name, value in renamed.items():
            own[name].copy_(value.to(own[name].dtype))

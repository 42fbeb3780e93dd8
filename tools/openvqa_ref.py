"""An MCAN network laid out as openvqa lays it out (docs/openvqa.md), for conversion parity tests.

Written from the facts in docs/openvqa.md: the module and parameter names equal openvqa's, so
`OpenVQAMCAN(...).state_dict()` has the keys of an openvqa MCAN checkpoint, and `save_openvqa_checkpoint`
writes the checkpoint dict openvqa writes ({"state_dict", "optimizer", "lr_base", "epoch"}). Inference only
(no dropout). `openvqa_question_ids` and `openvqa_build_vocab` follow openvqa's question processing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PUNCTUATION = ".,'!?\"()*#:;"  # deleted from questions
TO_SPACE = "-/"
MAX_TOKENS = 14
MASK_FILL = -1e9  # openvqa fills masked scores with -1e9 (all-masked rows become uniform)
_PUNCT_RE = re.compile("[" + re.escape(PUNCTUATION) + "]")


@dataclass
class OpenVQASizes:
    vocab: int
    answers: int
    hidden: int = 512
    heads: int = 8
    ff: int = 2048
    layers: int = 6
    embed: int = 300
    frcn_feat: int = 2048
    use_bbox: bool = True
    bbox_emb: int = 2048
    flat_mlp: int = 512
    glimpses: int = 1
    flat_out: int = 1024


def question_words(question: str) -> list[str]:
    text = _PUNCT_RE.sub("", question.lower())
    for ch in TO_SPACE:
        text = text.replace(ch, " ")
    return text.split()


def openvqa_build_vocab(questions: Iterable[str]) -> dict[str, int]:
    """PAD 0, UNK 1, CLS 2, then every word in first-seen order."""
    vocab = {"PAD": 0, "UNK": 1, "CLS": 2}
    for q in questions:
        for word in question_words(q):
            if word not in vocab:
                vocab[word] = len(vocab)
    return vocab


def openvqa_question_ids(question: str, vocab: dict[str, int], max_tokens: int = MAX_TOKENS) -> np.ndarray:
    ids = np.zeros(max_tokens, np.int64)
    for i, word in enumerate(question_words(question)[:max_tokens]):
        ids[i] = vocab.get(word, vocab["UNK"])
    return ids


def zero_row_mask(x: torch.Tensor) -> torch.Tensor:
    """[B, N, C] -> [B, 1, 1, N], True where the row sums to zero in absolute value."""
    return (x.abs().sum(-1) == 0)[:, None, None, :]


class LayerNorm(nn.Module):
    def __init__(self, size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.a_2 = nn.Parameter(torch.ones(size))
        self.b_2 = nn.Parameter(torch.zeros(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(-1, keepdim=True)
        return self.a_2 * centred / (x.std(-1, keepdim=True) + self.eps) + self.b_2


class FC(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.linear = nn.Linear(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.linear(x))


class MLP(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int) -> None:
        super().__init__()
        self.fc = FC(cin, mid)
        self.linear = nn.Linear(mid, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.fc(x))


class MHAtt(nn.Module):
    def __init__(self, s: OpenVQASizes) -> None:
        super().__init__()
        self.heads = s.heads
        self.linear_v = nn.Linear(s.hidden, s.hidden)
        self.linear_k = nn.Linear(s.hidden, s.hidden)
        self.linear_q = nn.Linear(s.hidden, s.hidden)
        self.linear_merge = nn.Linear(s.hidden, s.hidden)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, v: torch.Tensor, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        vh, kh, qh = self._split(self.linear_v(v)), self._split(self.linear_k(k)), self._split(self.linear_q(q))
        scores = qh @ kh.transpose(-2, -1) / math.sqrt(qh.shape[-1])
        att = F.softmax(scores.masked_fill(mask, MASK_FILL), dim=-1)
        out = (att @ vh).transpose(1, 2).reshape(q.shape[0], q.shape[1], -1)
        return self.linear_merge(out)


class FFN(nn.Module):
    def __init__(self, s: OpenVQASizes) -> None:
        super().__init__()
        self.mlp = MLP(s.hidden, s.ff, s.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class SA(nn.Module):
    def __init__(self, s: OpenVQASizes) -> None:
        super().__init__()
        self.mhatt, self.ffn = MHAtt(s), FFN(s)
        self.norm1, self.norm2 = LayerNorm(s.hidden), LayerNorm(s.hidden)

    def forward(self, y: torch.Tensor, y_mask: torch.Tensor) -> torch.Tensor:
        y = self.norm1(y + self.mhatt(y, y, y, y_mask))
        return self.norm2(y + self.ffn(y))


class SGA(nn.Module):
    def __init__(self, s: OpenVQASizes) -> None:
        super().__init__()
        self.mhatt1, self.mhatt2, self.ffn = MHAtt(s), MHAtt(s), FFN(s)
        self.norm1, self.norm2, self.norm3 = LayerNorm(s.hidden), LayerNorm(s.hidden), LayerNorm(s.hidden)

    def forward(self, x: torch.Tensor, y: torch.Tensor, x_mask: torch.Tensor, y_mask: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.mhatt1(x, x, x, x_mask))
        x = self.norm2(x + self.mhatt2(y, y, x, y_mask))  # image queries, question keys/values
        return self.norm3(x + self.ffn(x))


class MCA_ED(nn.Module):  # noqa: N801 (openvqa's module name)
    def __init__(self, s: OpenVQASizes) -> None:
        super().__init__()
        self.enc_list = nn.ModuleList(SA(s) for _ in range(s.layers))
        self.dec_list = nn.ModuleList(SGA(s) for _ in range(s.layers))

    def forward(self, y: torch.Tensor, x: torch.Tensor, y_mask: torch.Tensor,
                x_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for enc in self.enc_list:
            y = enc(y, y_mask)
        for dec in self.dec_list:
            x = dec(x, y, x_mask, y_mask)
        return y, x


class AttFlat(nn.Module):
    def __init__(self, s: OpenVQASizes) -> None:
        super().__init__()
        self.mlp = MLP(s.hidden, s.flat_mlp, s.glimpses)
        self.linear_merge = nn.Linear(s.hidden * s.glimpses, s.flat_out)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        att = self.mlp(x).masked_fill(x_mask[:, 0, 0, :, None], MASK_FILL)
        att = F.softmax(att, dim=1)  # [B, N, G]
        pooled = [(att[:, :, g:g + 1] * x).sum(1) for g in range(att.shape[-1])]
        return self.linear_merge(torch.cat(pooled, dim=1))


class Adapter(nn.Module):
    """VQA adapter: [bbox, area] -> bbox_linear, concatenated after the region features -> frcn_linear."""

    def __init__(self, s: OpenVQASizes) -> None:
        super().__init__()
        size = s.frcn_feat
        self.use_bbox = s.use_bbox
        if s.use_bbox:
            self.bbox_linear = nn.Linear(5, s.bbox_emb)
            size += s.bbox_emb
        self.frcn_linear = nn.Linear(size, s.hidden)

    def forward(self, frcn_feat: torch.Tensor, bbox_feat: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        mask = zero_row_mask(frcn_feat)
        if self.use_bbox:
            if bbox_feat is None:
                raise ValueError("this network uses box features: bbox_feat [B, N, 4] is required")
            area = (bbox_feat[:, :, 2] - bbox_feat[:, :, 0]) * (bbox_feat[:, :, 3] - bbox_feat[:, :, 1])
            box = self.bbox_linear(torch.cat([bbox_feat, area[:, :, None]], -1))
            frcn_feat = torch.cat([frcn_feat, box], dim=-1)
        return self.frcn_linear(frcn_feat), mask


class OpenVQAMCAN(nn.Module):
    """forward(frcn_feat [B, N, F], bbox_feat [B, N, 4] normalised or None, ques_ix [B, L]) -> logits [B, A]."""

    def __init__(self, s: OpenVQASizes) -> None:
        super().__init__()
        self.embedding = nn.Embedding(s.vocab, s.embed)
        self.lstm = nn.LSTM(s.embed, s.hidden, num_layers=1, batch_first=True)
        self.adapter = Adapter(s)
        self.backbone = MCA_ED(s)
        self.attflat_img = AttFlat(s)
        self.attflat_lang = AttFlat(s)
        self.proj_norm = LayerNorm(s.flat_out)
        self.proj = nn.Linear(s.flat_out, s.answers)
        self.eval()

    def forward(self, frcn_feat: torch.Tensor, bbox_feat: torch.Tensor | None, ques_ix: torch.Tensor) -> torch.Tensor:
        lang_mask = zero_row_mask(ques_ix.unsqueeze(2))
        lang, _ = self.lstm(self.embedding(ques_ix))
        img, img_mask = self.adapter(frcn_feat, bbox_feat)
        lang, img = self.backbone(lang, img, lang_mask, img_mask)
        fused = self.attflat_lang(lang, lang_mask) + self.attflat_img(img, img_mask)
        return self.proj(self.proj_norm(fused))


def openvqa_region_inputs(x_fn: np.ndarray, bbox: np.ndarray, image_w: float, image_h: float,
                          pad_size: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """An .npz's `x` [F, N] and `bbox` [N, 4] (pixels) -> padded features [pad, F], normalised boxes [pad, 4]."""
    feats = np.asarray(x_fn, np.float32).T[:pad_size]
    boxes = np.asarray(bbox, np.float32)[:pad_size] / np.array([image_w, image_h, image_w, image_h], np.float32)
    out_f = np.zeros((pad_size, feats.shape[1]), np.float32)
    out_b = np.zeros((pad_size, 4), np.float32)
    out_f[:feats.shape[0]] = feats
    out_b[:boxes.shape[0]] = boxes
    return out_f, out_b


def randomize(model: nn.Module, seed: int, scale: float = 0.5) -> None:
    """Seeded random weights; LayerNorm gains near 1 so activations stay in a realistic range."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("a_2"):
                p.copy_(1.0 + 0.1 * noise)
            elif p.dim() >= 2:
                p.copy_(noise * (scale / math.sqrt(p.shape[1])))
            else:
                p.copy_(0.1 * noise)


def save_openvqa_checkpoint(model: nn.Module, path: str | Path, legacy: bool = True, data_parallel: bool = False,
                            epoch: int = 13) -> Path:
    """The dict openvqa saves per epoch; `legacy` writes the pre-1.6 (non-zip) pickle format."""
    state = model.state_dict()
    if data_parallel:
        state = {"module." + k: v for k, v in state.items()}
    ckpt = {"state_dict": state, "optimizer": {"state": {}, "param_groups": []}, "lr_base": 1e-4, "epoch": epoch}
    path = Path(path)
    torch.save(ckpt, str(path), _use_new_zipfile_serialization=not legacy)
    return path

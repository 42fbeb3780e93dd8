"""Attention building blocks of docs/model-format.md §6-§7: masked softmax, MHA, LayerNorm, FFN, layers, AttFlat."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def masked_softmax(scores: torch.Tensor, masked: torch.Tensor, masked_row: str, dim: int = -1) -> torch.Tensor:
    """Softmax of `scores` over `dim`, where `masked` (bool, True = excluded, broadcastable) keys get -inf.

    A row whose keys are all masked gets P = 0 (masked_row "zero") or P = 1/n over all keys ("uniform",
    what openvqa's -1e9 fill gives). Never NaN.
    """
    scores = scores.masked_fill(masked, float("-inf"))
    all_masked = masked.all(dim=dim, keepdim=True)
    scores = scores.masked_fill(all_masked, 0.0)
    probs = torch.softmax(scores, dim=dim)
    if masked_row == "zero":
        probs = probs.masked_fill(all_masked, 0.0)
    elif masked_row != "uniform":
        raise ValueError(f"masked_row: expected \"zero\" or \"uniform\", got {masked_row!r}")
    return probs


class LayerNorm(nn.Module):
    """LayerNorm over the last dimension, `standard` (nn.LayerNorm) or `unbiased_std` (openvqa)."""

    def __init__(self, dim: int, variant: str, eps: float) -> None:
        super().__init__()
        if variant not in ("standard", "unbiased_std"):
            raise ValueError(f"layer_norm.variant: expected \"standard\" or \"unbiased_std\", got {variant!r}")
        self.variant = variant
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.variant == "standard":
            return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)
        mean = x.mean(dim=-1, keepdim=True)
        std = x.std(dim=-1, keepdim=True, unbiased=True)
        return self.weight * (x - mean) / (std + self.eps) + self.bias


class MultiHeadAttention(nn.Module):
    """MHA(x_q [B, Lq, d], x_kv [B, Lk, d], kv_mask [B, Lk] True = masked) -> [B, Lq, d]."""

    def __init__(self, dim: int, heads: int, masked_row: str, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"fusion.heads={heads} must divide fusion.hidden={dim}")
        self.heads = heads
        self.masked_row = masked_row
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.use_sdpa = False  # set_sdpa(): attention through F.scaled_dot_product_attention

    def forward(self, x_q: torch.Tensor, x_kv: torch.Tensor, kv_mask: torch.Tensor) -> torch.Tensor:
        batch, len_q, dim = x_q.shape
        len_k = x_kv.shape[1]
        head_dim = dim // self.heads
        q = self.q(x_q).view(batch, len_q, self.heads, head_dim).transpose(1, 2)  # [B, H, Lq, Dh]
        k = self.k(x_kv).view(batch, len_k, self.heads, head_dim).transpose(1, 2)  # [B, H, Lk, Dh]
        v = self.v(x_kv).view(batch, len_k, self.heads, head_dim).transpose(1, 2)  # [B, H, Lk, Dh]
        if self.use_sdpa:
            out = self._sdpa(q, k, v, kv_mask)
        else:
            scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(head_dim)  # [B, H, Lq, Lk]
            probs = masked_softmax(scores, kv_mask[:, None, None, :], self.masked_row)
            out = torch.matmul(self.dropout(probs), v)  # [B, H, Lq, Dh]
        return self.o(out.transpose(1, 2).reshape(batch, len_q, dim))

    def _sdpa(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kv_mask: torch.Tensor) -> torch.Tensor:
        """softmax(q kᵀ / sqrt(Dh)) v through F.scaled_dot_product_attention, with the masked_row rule.

        q [B, H, Lq, Dh], k and v [B, H, Lk, Dh], kv_mask [B, Lk] (True = masked) -> [B, H, Lq, Dh]. SDPA's
        boolean mask is the opposite (True = takes part), and a query with no key taking part comes out NaN; so
        such samples attend to every key, and their output is then replaced: 0 ("zero": P = 0) or the mean of
        v over the keys ("uniform": P = 1/Lk).
        """
        if self.masked_row not in ("zero", "uniform"):
            raise ValueError(f"masked_row: expected \"zero\" or \"uniform\", got {self.masked_row!r}")
        all_masked = kv_mask.all(dim=-1)[:, None, None, None]  # [B, 1, 1, 1]
        attend = ~kv_mask[:, None, None, :] | all_masked  # [B, 1, 1, Lk]
        dropout_p = self.dropout.p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attend, dropout_p=dropout_p)
        if self.masked_row == "zero":
            return out.masked_fill(all_masked, 0.0)
        return torch.where(all_masked, v.mean(dim=-2, keepdim=True), out)


def sdpa_available() -> bool:
    """Whether this PyTorch has torch.nn.functional.scaled_dot_product_attention (PyTorch >= 2.0)."""
    return hasattr(F, "scaled_dot_product_attention")


def set_sdpa(model: nn.Module, enabled: bool) -> int:
    """Route every MultiHeadAttention of `model` through SDPA (True) or the explicit math (False, the default).

    Returns how many attention modules were switched. The two paths compute the same function (the masked_row
    rule included); they differ in the last bits only. Raises RuntimeError when SDPA is asked for and missing.
    """
    if enabled and not sdpa_available():
        raise RuntimeError(f"torch {torch.__version__} has no torch.nn.functional.scaled_dot_product_attention "
                           "(it needs PyTorch >= 2.0)")
    modules = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    for m in modules:
        m.use_sdpa = enabled
    return len(modules)


class FeedForward(nn.Module):
    def __init__(self, dim: int, ff: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, ff)
        self.fc2 = nn.Linear(ff, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


class FusionSpec:
    """The hyperparameters every attention layer shares."""

    def __init__(self, cfg: dict, dropout: float = 0.0) -> None:
        self.dim: int = cfg["fusion"]["hidden"]
        self.heads: int = cfg["fusion"]["heads"]
        self.ff: int = cfg["fusion"]["ff"]
        self.masked_row: str = cfg["fusion"]["masked_row"]
        self.ln_variant: str = cfg["layer_norm"]["variant"]
        self.ln_eps: float = cfg["layer_norm"]["eps"]
        self.dropout = dropout

    def mha(self) -> MultiHeadAttention:
        return MultiHeadAttention(self.dim, self.heads, self.masked_row, self.dropout)

    def norm(self, dim: int | None = None) -> LayerNorm:
        return LayerNorm(dim or self.dim, self.ln_variant, self.ln_eps)

    def ffn(self) -> FeedForward:
        return FeedForward(self.dim, self.ff, self.dropout)


class SelfAttentionLayer(nn.Module):
    """SA(x, m): x = LN1(x + MHA(x, x, m)); x = LN2(x + FFN(x))."""

    def __init__(self, spec: FusionSpec) -> None:
        super().__init__()
        self.att, self.norm1, self.ffn, self.norm2 = spec.mha(), spec.norm(), spec.ffn(), spec.norm()
        self.dropout = nn.Dropout(spec.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.att(x, x, mask)))
        return self.norm2(x + self.dropout(self.ffn(x)))


class GuidedAttentionLayer(nn.Module):
    """SGA(x, mx, y, my): self-attention, then cross-attention to y, then FFN; post-norm."""

    def __init__(self, spec: FusionSpec) -> None:
        super().__init__()
        self.self_att, self.norm1 = spec.mha(), spec.norm()
        self.cross_att, self.norm2 = spec.mha(), spec.norm()
        self.ffn, self.norm3 = spec.ffn(), spec.norm()
        self.dropout = nn.Dropout(spec.dropout)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, y: torch.Tensor, y_mask: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.self_att(x, x, x_mask)))
        x = self.norm2(x + self.dropout(self.cross_att(x, y, y_mask)))
        return self.norm3(x + self.dropout(self.ffn(x)))


class CrossAttentionLayer(nn.Module):
    """GA(x, y, my): x = LN1(x + MHA(x, y, my)); x = LN2(x + FFN(x))."""

    def __init__(self, spec: FusionSpec) -> None:
        super().__init__()
        self.cross_att, self.norm1, self.ffn, self.norm2 = spec.mha(), spec.norm(), spec.ffn(), spec.norm()
        self.dropout = nn.Dropout(spec.dropout)

    def forward(self, x: torch.Tensor, y: torch.Tensor, y_mask: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.cross_att(x, y, y_mask)))
        return self.norm2(x + self.dropout(self.ffn(x)))


class AttentionPool(nn.Module):
    """AttFlat: x [B, L, d], mask [B, L] (True = masked) -> [B, out_dim]."""

    def __init__(self, dim: int, mlp_hidden: int, glimpses: int, out_dim: int, masked_row: str,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.masked_row = masked_row
        self.fc1 = nn.Linear(dim, mlp_hidden)
        self.fc2 = nn.Linear(mlp_hidden, glimpses)
        self.merge = nn.Linear(glimpses * dim, out_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.fc2(self.dropout(F.relu(self.fc1(x))))  # [B, L, G]
        weights = masked_softmax(scores.transpose(1, 2), mask[:, None, :], self.masked_row)  # [B, G, L]
        pooled = torch.matmul(weights, x)  # [B, G, d], glimpse g = row g
        return self.merge(pooled.reshape(x.shape[0], -1))

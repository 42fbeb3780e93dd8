// Multi-head scaled dot-product attention with a key padding mask (docs/model-format.md §6.1):
//   P[b, h] = masked_softmax(scale · Q[b, h] · K[b, h]ᵀ),  O[b, h] = P[b, h] · V[b, h].
//
// Sequences are padded to one length (dense: [B, L, ·] with a key mask), or packed (variable-length: sequence b
// owns a run of token rows given by offsets, so padding costs neither rows nor work; docs/padding-removal.md).
//
// Layout: every tensor is described by strides over a [B, H, L, Dh] view with the Dh elements of a head row
// contiguous, so the same call reads Q/K/V as column slices of a fused projection ([B, L, 3·H·Dh], no split
// copy) or as head-major [B, H, L, Dh] buffers, and writes O heads-merged [B, L, H·Dh], ready for the output
// projection. Mask convention and the fully masked row rule: kernels/cpu/masked_softmax.h.
#pragma once

#include <cstdint>

#include "kernels/cpu/masked_softmax.h"

namespace vqa::cpu {

// Element (b, h, i, e) of a [B, H, L, Dh] view lives at b·batch + h·head + i·row + e (elements).
struct HeadStrides {
    int64_t batch = 0;
    int64_t head = 0;
    int64_t row = 0;
};

// Token-major [B, L, H·Dh] with rows `row_stride` apart (H·Dh, or e.g. 3·H·Dh inside a fused QKV buffer).
inline HeadStrides token_major_strides(int64_t seq_len, int64_t head_dim, int64_t row_stride) {
    return {seq_len * row_stride, head_dim, row_stride};
}

// Head-major, dense [B, H, L, Dh].
inline HeadStrides head_major_strides(int64_t heads, int64_t seq_len, int64_t head_dim) {
    return {heads * seq_len * head_dim, seq_len * head_dim, head_dim};
}

struct AttentionParams {
    int64_t batch = 0;     // B
    int64_t heads = 0;     // H
    int64_t q_len = 0;     // Lq
    int64_t kv_len = 0;    // Lk (≥ 1)
    int64_t head_dim = 0;  // Dh
    HeadStrides q;         // q: [B, H, Lq, Dh] view
    HeadStrides k;         // k: [B, H, Lk, Dh] view
    HeadStrides v;         // v: [B, H, Lk, Dh] view
    HeadStrides o;         // o: [B, H, Lq, Dh] view (token_major_strides(Lq, Dh, H·Dh) for merged heads)
    float scale = 1.0f;    // 1/sqrt(Dh); 1 when Q was pre-scaled by its projection
    MaskedRow masked_row = MaskedRow::kZero;

    // Packed sequences, when q_offsets is set: sequence b's queries are the rows q_offsets[b] .. q_offsets[b+1]-1
    // of q and o, and its keys and values the rows kv_start[b] .. kv_start[b]+kv_count[b]-1 of k and v (runs of
    // key rows may overlap or repeat: questions about one image share its rows). The batch strides are unused;
    // Lq and Lk are the largest query and key counts; the mask, when given, is indexed by key row (uint8
    // [total key rows]); P keeps the dense layout [B, H, Lq, Lk], sequence b filling its top-left
    // count_q × count_k block. Host pointers for cpu::attention, device pointers for cuda::fused_attention.
    const int32_t* q_offsets = nullptr;  // [B+1]: q_offsets[0] = 0, non-decreasing, each count <= Lq
    const int32_t* kv_start = nullptr;   // [B]: >= 0
    const int32_t* kv_count = nullptr;   // [B]: each in 1..Lk
    bool packed() const { return q_offsets != nullptr; }
};

// Writes O and P. probs is required: it is the score workspace ([B, H, Lq, Lk], B·H·Lq·Lk floats, dense) and
// holds the attention probabilities on return (rows sum to 1, or to 0 for a fully masked row under kZero).
// Packed sequences (params.packed()) must come with kv_start and kv_count; their counts are checked.
// o must not overlap q, k, v or probs. Runs (b, h) pairs in parallel.
void attention(const AttentionParams& params,
               const float* q,       // see params.q
               const float* k,       // see params.k
               const float* v,       // see params.v
               const uint8_t* mask,  // [B, Lk] (packed: [total key rows]), 1 = valid key, or null
               float* o,             // see params.o
               float* probs);        // [B, H, Lq, Lk]

}  // namespace vqa::cpu

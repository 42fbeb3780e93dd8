// Fused multi-head attention for short sequences (CUDA entry points; the CPU reference with the same contract is
// vqa::cpu::attention in kernels/cpu/attention.h, and the parameters are its AttentionParams):
//
//   P[b, h] = masked_softmax(scale · Q[b, h] · K[b, h]ᵀ),  O[b, h] = P[b, h] · V[b, h]
//
// Q, K, V and O are described by HeadStrides over a [B, H, L, Dh] view (head rows contiguous), so K and V can be
// column slices of a fused projection buffer or dense [B, H, L, Dh] tensors, and O can be written heads-merged.
// The key padding mask is uint8 [B, Lk], 1 = valid key, null = all valid; a query whose keys are all masked
// follows params.masked_row (kZero: O row and P row zero; kUniform: P = 1/Lk, O = mean of V over all keys).
// Packed sequences (params.packed(), offsets as in cpu::AttentionParams, all device pointers): the grid still
// covers the largest counts, and a CTA past its sequence's query count returns at once. Lk and the mask rules
// apply per sequence (kUniform: P = 1/kv_count[b]); the mask is indexed by key row. The offsets live on the
// device, so only their presence is checked on the host; the kernel clamps bad counts instead of reading out of
// bounds: query counts to 0..Lq, key counts to at most Lk, and a sequence with no keys (kv_count < 1 or
// kv_start < 0) gets zero O rows under either rule and no P entries. Row offsets are trusted to lie inside the
// buffers, and q_offsets[0] is not required to be 0 here (the rows just start there).
// The score matrix is never written: softmax runs online over key tiles in float. P is written only when the
// caller asks for attention maps (probs non-null); it is float whatever the element type, like the reference's.
#pragma once

#include <cstdint>
#include <type_traits>

#include "kernels/check.h"
#include "kernels/cpu/attention.h"

#if VQA_WITH_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#endif

namespace vqa {

// Largest head dimension the fused kernel takes (32, 64 and 128 are compiled for their exact size; other sizes
// up to this run a runtime-size instantiation).
constexpr int kFusedAttentionMaxHeadDim = 256;

// Checks fused attention's arguments; `op` names the caller in the message. Throws vqa::Error(kInvalidArgument).
inline void check_fused_attention_args(
    const cpu::AttentionParams& p, const void* q, const void* k, const void* v, const void* o, const char* op) {
    VQA_CHECK(p.batch >= 0 && p.heads >= 1 && p.q_len >= 0 && p.kv_len >= 1 && p.head_dim >= 1, kInvalidArgument, op,
              ": expected B >= 0, H >= 1, Lq >= 0, Lk >= 1, Dh >= 1, got B=", p.batch, " H=", p.heads, " Lq=", p.q_len,
              " Lk=", p.kv_len, " Dh=", p.head_dim);
    VQA_CHECK(p.head_dim <= kFusedAttentionMaxHeadDim, kInvalidArgument, op, ": head_dim ", p.head_dim, " exceeds ",
              kFusedAttentionMaxHeadDim, "; use the unfused path (GEMM + masked_softmax + GEMM)");
    VQA_CHECK(p.q.row >= p.head_dim && p.k.row >= p.head_dim && p.v.row >= p.head_dim && p.o.row >= p.head_dim,
              kInvalidArgument, op, ": row strides must be >= Dh (", p.head_dim, "); got q=", p.q.row, " k=", p.k.row,
              " v=", p.v.row, " o=", p.o.row);
    VQA_CHECK(p.batch <= 65535 && p.heads <= 65535, kInvalidArgument, op, ": B (", p.batch, ") and H (", p.heads,
              ") must be <= 65535 (grid limits); split the batch into smaller calls");
    if (p.batch == 0 || p.q_len == 0) {
        return;
    }
    VQA_CHECK(q != nullptr && k != nullptr && v != nullptr && o != nullptr, kInvalidArgument, op,
              ": q, k, v and o must not be null for a non-empty shape");
    VQA_CHECK(!p.packed() || (p.kv_start != nullptr && p.kv_count != nullptr), kInvalidArgument, op,
              ": packed sequences (q_offsets set) need kv_start and kv_count as well");
}

#if VQA_WITH_CUDA
namespace cuda {

// q, k, v, o: see params.q/k/v/o; mask: [B, Lk] (packed: [total key rows]) or null; probs: [B, H, Lq, Lk] dense,
// or null when no attention maps are wanted. o must not overlap q, k, v or probs. Asynchronous on `stream`; no
// allocation. T is float, __half or __nv_bfloat16 (instantiated in fused_attention.cu), deduced from q alone:
// std::add_pointer_t<T> keeps k, v and o out of deduction, so they may be plain nullptrs.
template <typename T>
void fused_attention(const cpu::AttentionParams& params,
                     const T* q,
                     std::add_pointer_t<const T> k,
                     std::add_pointer_t<const T> v,
                     const uint8_t* mask,
                     std::add_pointer_t<T> o,
                     float* probs,
                     cudaStream_t stream);

}  // namespace cuda
#endif

}  // namespace vqa

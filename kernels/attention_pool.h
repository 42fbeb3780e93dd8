// Attention pooling, openvqa's AttFlat (CUDA entry point; the CPU reference with the same contract is
// vqa::cpu::attention_pool in kernels/cpu/attention_pool.h):
//
//   weights[b, :, g] = masked softmax over l of the logits weights[b, :, g]   (in place: the pooling's map)
//   z[b, g·d + j]    = Σ_l weights[b, l, g] · x[b, l, j]                      (glimpses concatenated, z_0 first)
//
// Element types: x and z are T (float, half or bf16); the logits and the returned map are float whatever T is,
// like fused_attention's attention maps. The softmax statistics are float, and a [L, G] map is tiny, so keeping
// it in float costs nothing and keeps the logits' precision; the fc2 GEMM that makes the logits writes fp32
// output from fp16/bf16 inputs (a cuBLASLt matmul with a CUDA_R_32F C/D).
// Mask convention and the fully masked row rule are those of kernels/cpu/masked_softmax.h: uint8 [B, L],
// 1 = valid position, null = all valid; a masked position gets weight exactly 0; a sample with no valid
// position gets weights 0 and z = 0 (kZero), or weights 1/L and z = the mean of x over l (kUniform), never NaN.
// Packed samples (params.offsets set, a device pointer [B+1]): sample b's positions are the rows offsets[b] ..
// offsets[b+1]-1 of x, weights ([total rows, G]) and mask ([total rows]), and L in the rules above is its own
// count. The offsets live on the device, so the host cannot check them; the kernel clamps each count to 0..L
// (L = params.seq_len, the largest count), and a sample with no rows gets z = 0 and writes no weights. Row
// offsets are trusted to lie inside the buffers; offsets[0] need not be 0 here (the rows just start there).
#pragma once

#include <cstdint>
#include <limits>

#include "kernels/check.h"
#include "kernels/cpu/masked_softmax.h"

#if VQA_WITH_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#endif

namespace vqa {

// Largest L·G the kernel takes: one sample's map is staged in 32 KB of shared memory (L = 2048 at G = 4).
constexpr int64_t kAttentionPoolMaxMapSize = 8192;

struct AttentionPoolParams {
    int64_t batch = 0;                                  // B
    int64_t seq_len = 0;                                // L: positions per sample
    int64_t dim = 0;                                    // d: features per position
    int64_t glimpses = 1;                               // G: softmax maps per sample; z has G·d columns
    cpu::MaskedRow masked_row = cpu::MaskedRow::kZero;  // what a sample with no valid position gets
    const int32_t* offsets = nullptr;                   // [B+1] device pointer: packed samples' rows, or null (dense)
};

// Checks attention pooling's arguments; `op` names the caller in the message. Throws
// vqa::Error(kInvalidArgument).
inline void check_attention_pool_args(
    const AttentionPoolParams& p, const void* x, const float* weights, const void* z, const char* op) {
    VQA_CHECK(p.batch >= 0 && p.seq_len >= 1 && p.dim >= 1 && p.glimpses >= 1, kInvalidArgument, op,
              ": expected B >= 0, L, d, G >= 1, got B=", p.batch, " L=", p.seq_len, " d=", p.dim, " G=", p.glimpses);
    VQA_CHECK(p.seq_len * p.glimpses <= kAttentionPoolMaxMapSize, kInvalidArgument, op,
              ": L·G = ", p.seq_len * p.glimpses, " exceeds ", kAttentionPoolMaxMapSize,
              " (one sample's map must fit in shared memory); pool fewer positions or glimpses per call");
    VQA_CHECK(p.dim <= std::numeric_limits<int>::max() / p.glimpses, kInvalidArgument, op,
              ": G·d = ", p.glimpses * p.dim, " must fit in 32 bits");
    VQA_CHECK(p.batch <= std::numeric_limits<int>::max(), kInvalidArgument, op, ": B = ", p.batch,
              " exceeds one launch (2^31-1 blocks); split the batch");
    if (p.batch == 0) {
        return;
    }
    VQA_CHECK(x != nullptr && weights != nullptr && z != nullptr, kInvalidArgument, op,
              ": x, weights and z must not be null for a non-empty batch");
}

#if VQA_WITH_CUDA
namespace cuda {

// The weights are float whatever T is (see above); z must not overlap x or weights. One block per sample.
// Packed (params.offsets set): x [total rows, d], weights [total rows, G] and mask [total rows] instead.
// Asynchronous on `stream`; no allocation. Instantiated for T = float, __half and __nv_bfloat16.
template <typename T>
void attention_pool(const AttentionPoolParams& params,
                    const T* x,           // [B, L, d]
                    float* weights,       // [B, L, G]: in, the logits; out, the softmax weights
                    const uint8_t* mask,  // [B, L], 1 = valid position, or null
                    T* z,                 // [B, G·d]
                    cudaStream_t stream);

extern template void attention_pool<float>(
    const AttentionPoolParams&, const float*, float*, const uint8_t*, float*, cudaStream_t);
extern template void attention_pool<__half>(
    const AttentionPoolParams&, const __half*, float*, const uint8_t*, __half*, cudaStream_t);
extern template void attention_pool<__nv_bfloat16>(
    const AttentionPoolParams&, const __nv_bfloat16*, float*, const uint8_t*, __nv_bfloat16*, cudaStream_t);

}  // namespace cuda
#endif

}  // namespace vqa

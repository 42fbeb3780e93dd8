// Fused head projection: a GEMM whose epilogue adds the bias, scales and splits the columns into heads (CUDA entry
// points; the CPU reference with the same contract is kernels/cpu/qkv_projection.h).
//
//   y = x · Wᵀ + bias,  x [B·L, K], W [G·H·Dh, K] (PyTorch nn.Linear layout, rows group-major: q | k | v)
//   outputs[g][b, h, l, e] = scales[g] · y[b·L + l, g·H·Dh + h·Dh + e]      outputs[g]: [B, H, L, Dh]
//
// The three uses in the model are the same call with a different number of column groups G:
//   self-attention   G = 3: W_qkv [3d, d] -> Q, K, V (scales[0] = 1/sqrt(Dh) pre-scales Q)
//   cross-attention  G = 1: W_q [d, d] on one modality -> Q;  G = 2: W_kv [2d, d] on the other -> K, V
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>

#include "kernels/check.h"

#if VQA_WITH_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#endif

namespace vqa {

constexpr int kMaxProjectionGroups = 3;

struct HeadProjectionParams {
    int batch = 0;        // B
    int seq_len = 0;      // L: x holds M = B·L token rows
    int in_features = 0;  // K: columns of x and of the weight
    int num_heads = 0;    // H
    int head_dim = 0;     // Dh: every group has H·Dh output columns
    int num_groups = 3;   // G in 1..3: the weight has G·H·Dh rows, group g goes to outputs[g]
    float scales[kMaxProjectionGroups] = {1.0f, 1.0f, 1.0f};  // group g is multiplied by scales[g] after the bias
    int64_t x_row_stride = 0;                                 // elements from x[m, 0] to x[m + 1, 0]; 0 means dense (K)

    int64_t rows() const { return int64_t{batch} * seq_len; }             // M
    int64_t group_cols() const { return int64_t{num_heads} * head_dim; }  // H·Dh
    int64_t cols() const { return group_cols() * num_groups; }            // N
    int64_t x_stride() const { return x_row_stride == 0 ? in_features : x_row_stride; }
};

// The outputs of a projection, one [B, H, L, Dh] tensor per group; unused groups stay null.
template <typename T>
struct HeadOutputs {
    T* group[kMaxProjectionGroups] = {nullptr, nullptr, nullptr};
};

// Self-attention Q, K, V from one input: G = 3, Q pre-scaled by q_scale.
inline HeadProjectionParams qkv_projection_params(int batch, int seq_len, int d_model, int heads, float q_scale) {
    HeadProjectionParams p;
    p.batch = batch;
    p.seq_len = seq_len;
    p.in_features = d_model;
    p.num_heads = heads;
    p.head_dim = heads > 0 ? d_model / heads : 0;
    p.num_groups = 3;
    p.scales[0] = q_scale;
    return p;
}

// Cross-attention Q (G = 1, pre-scaled by q_scale) or fused K, V (G = 2, q_scale ignored) from one modality.
inline HeadProjectionParams cross_projection_params(
    int batch, int seq_len, int d_model, int heads, int groups, float q_scale) {
    HeadProjectionParams p = qkv_projection_params(batch, seq_len, d_model, heads, 1.0f);
    p.num_groups = groups;
    p.scales[0] = groups == 1 ? q_scale : 1.0f;
    return p;
}

// Checks a projection's arguments (shared by the CUDA entries and the CPU reference); `op` names the caller in
// the message. Throws vqa::Error(kInvalidArgument).
template <typename T>
void check_head_projection_args(
    const HeadProjectionParams& p, const void* x, const void* weight, const HeadOutputs<T>& outputs, const char* op) {
    VQA_CHECK(p.batch >= 0 && p.seq_len >= 0 && p.in_features >= 1 && p.num_heads >= 1 && p.head_dim >= 1,
              kInvalidArgument, op, ": expected B >= 0, L >= 0, K >= 1, H >= 1, Dh >= 1, got B=", p.batch,
              " L=", p.seq_len, " K=", p.in_features, " H=", p.num_heads, " Dh=", p.head_dim);
    VQA_CHECK(p.num_groups >= 1 && p.num_groups <= kMaxProjectionGroups, kInvalidArgument, op,
              ": num_groups must be 1 (Q), 2 (K, V) or 3 (Q, K, V), got ", p.num_groups);
    VQA_CHECK(p.x_row_stride == 0 || p.x_row_stride >= p.in_features, kInvalidArgument, op,
              ": expected x_row_stride >= K = ", p.in_features, " (or 0 for dense rows), got ", p.x_row_stride);
    VQA_CHECK(p.rows() <= std::numeric_limits<int>::max() && p.cols() <= std::numeric_limits<int>::max(),
              kInvalidArgument, op, ": M = B·L (", p.rows(), ") and N = G·H·Dh (", p.cols(),
              ") must fit in 32 bits; split the batch");
    if (p.rows() == 0) {
        return;
    }
    VQA_CHECK(x != nullptr && weight != nullptr, kInvalidArgument, op, ": x and weight must not be null");
    for (int g = 0; g < p.num_groups; ++g) {
        VQA_CHECK(outputs.group[g] != nullptr, kInvalidArgument, op, ": output of group ", g, " is null but ",
                  p.num_groups, " groups were asked for");
    }
}

#if VQA_WITH_CUDA
namespace cuda {

// x: [B·L, K] (rows params.x_stride() apart); weight: [G·H·Dh, K]; bias: [G·H·Dh] or null;
// outputs.group[g]: [B, H, L, Dh]. fp16/bf16 run on tensor cores (WMMA) with float accumulation, fp32 on CUDA
// cores; any M, N, K. Asynchronous on `stream`; no allocation. T is float, __half or __nv_bfloat16 (instantiated in
// qkv_projection.cu), deduced from x and outputs: std::add_pointer_t<T> keeps weight and bias out of deduction, so
// they may be plain nullptrs.
template <typename T>
void fused_qkv_projection(const HeadProjectionParams& params,
                          const T* x,
                          std::add_pointer_t<const T> weight,
                          std::add_pointer_t<const T> bias,
                          const HeadOutputs<T>& outputs,
                          cudaStream_t stream);

}  // namespace cuda
#endif

}  // namespace vqa

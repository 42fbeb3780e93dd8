// Fully connected layer and the GEMM every CPU op is built on (OpenBLAS cblas_sgemm, fp32).
#pragma once

#include <cstdint>

#include "kernels/cpu/bias_act.h"

namespace vqa::cpu {

// Row-major C[M, N] = alpha · op(A) · op(B) + beta · C, where op(A) is [M, K] (A stored [K, M] when trans_a) and
// op(B) is [K, N] (B stored [N, K] when trans_b). Arguments in cblas_sgemm/cublasSgemm order, so no params
// struct. Row strides lda/ldb/ldc are in elements and may exceed the row length (column slices of wider
// buffers). With beta = 0, C is not read (a NaN-filled C is fine). Runs on OpenBLAS's own threads: call it from
// inside an OpenMP parallel region only when gemm_runs_single_threaded(M, N, K).
void gemm(bool trans_a,
          bool trans_b,
          int64_t M,
          int64_t N,
          int64_t K,
          float alpha,
          const float* a,
          int64_t lda,
          const float* b,
          int64_t ldb,
          float beta,
          float* c,
          int64_t ldc);

// Whether OpenBLAS runs a GEMM of these sizes on the calling thread alone (M·N·K at most 2^18, its default
// GEMM_MULTITHREAD_THRESHOLD · SMP_THRESHOLD_MIN). Only such GEMMs may run side by side on OpenMP threads: a
// threaded GEMM called from inside an OpenMP region fights over the cores with OpenBLAS's own pool (measured 20×
// slower for attention with B=32, H=8, L=100, Dh=64 on 2 cores).
inline bool gemm_runs_single_threaded(int64_t M, int64_t N, int64_t K) {
    constexpr double kMaxSingleThreadedMacs = 262144.0;
    return static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K) <= kMaxSingleThreadedMacs;
}

// y[M, N] = act(x[M, K] · weightᵀ + bias + residual), weight in PyTorch layout [N, K].
// bias and residual may be null. y may alias residual (in-place residual add), not x.
void linear(const float* x,         // [M, K]
            const float* weight,    // [N, K]
            const float* bias,      // [N] or null
            const float* residual,  // [M, N] or null
            float* y,               // [M, N]
            int64_t M,
            int64_t N,
            int64_t K,
            Activation act = Activation::kNone);

}  // namespace vqa::cpu

#include "kernels/cpu/linear.h"

#include <algorithm>
#include <climits>
#include <cstring>

#include <cblas.h>

#include "kernels/check.h"

namespace vqa::cpu {

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
          int64_t ldc) {
    VQA_CHECK(M >= 0 && N >= 0 && K >= 0, kInvalidArgument, "cpu::gemm: negative size M=", M, " N=", N, " K=", K);
    const int64_t a_cols = trans_a ? M : K;
    const int64_t b_cols = trans_b ? K : N;
    VQA_CHECK(
        lda >= std::max<int64_t>(1, a_cols) && ldb >= std::max<int64_t>(1, b_cols) && ldc >= std::max<int64_t>(1, N),
        kInvalidArgument, "cpu::gemm: row strides shorter than the rows: lda=", lda, " (row ", a_cols, "), ldb=", ldb,
        " (row ", b_cols, "), ldc=", ldc, " (row ", N, ")");
    VQA_CHECK(std::max({M, N, K, lda, ldb, ldc}) <= INT_MAX, kInvalidArgument,
              "cpu::gemm: sizes and strides must fit in a 32-bit BLAS int; split the call");
    if (M == 0 || N == 0) {
        return;
    }
    if (K == 0) {
        // BLAS rejects K = 0 with these strides; the product is empty, so C = beta · C (beta = 0: C is not read).
        for (int64_t i = 0; i < M; ++i) {
            float* row = c + i * ldc;
            for (int64_t j = 0; j < N; ++j) {
                row[j] = beta == 0.0f ? 0.0f : beta * row[j];
            }
        }
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, a, static_cast<int>(lda), b,
                static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

void linear(const float* x,
            const float* weight,
            const float* bias,
            const float* residual,
            float* y,
            int64_t M,
            int64_t N,
            int64_t K,
            Activation act) {
    VQA_CHECK(M >= 0 && N >= 0 && K >= 0, kInvalidArgument, "cpu::linear: negative size M=", M, " N=", N, " K=", K);
    if (M == 0 || N == 0) {
        return;
    }
    VQA_CHECK(y != nullptr && (K == 0 || (x != nullptr && weight != nullptr)), kInvalidArgument,
              "cpu::linear: x, weight and y must not be null");
    VQA_CHECK(y != x, kInvalidArgument, "cpu::linear: y must not alias x");
    float beta = 0.0f;
    if (residual != nullptr) {
        if (residual != y) {
            std::memcpy(y, residual, sizeof(float) * static_cast<size_t>(M * N));
        }
        beta = 1.0f;  // the GEMM accumulates onto the residual already in y
    }
    gemm(false, true, M, N, K, 1.0f, x, std::max<int64_t>(1, K), weight, std::max<int64_t>(1, K), beta, y, N);
    if (bias != nullptr || act != Activation::kNone) {
        bias_act(y, bias, y, M, N, act);
    }
}

}  // namespace vqa::cpu

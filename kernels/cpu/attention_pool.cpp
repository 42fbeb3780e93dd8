#include "kernels/cpu/attention_pool.h"

#include <algorithm>
#include <climits>

#include "kernels/check.h"
#include "kernels/cpu/linear.h"

namespace vqa::cpu {

void attention_pool(const float* x,
                    float* weights,
                    const uint8_t* mask,
                    float* z,
                    int64_t batch,
                    int64_t seq_len,
                    int64_t dim,
                    int64_t glimpses,
                    MaskedRow masked_row,
                    const int32_t* offsets) {
    VQA_CHECK(batch >= 0 && seq_len >= 1 && dim >= 1 && glimpses >= 1, kInvalidArgument,
              "cpu::attention_pool: expected B >= 0, L, d, G >= 1, got B=", batch, " L=", seq_len, " d=", dim,
              " G=", glimpses);
    // gemm() throws on sizes a BLAS int cannot hold; check here because an exception must not leave the
    // parallel region.
    VQA_CHECK(std::max({seq_len, dim, glimpses}) <= INT_MAX, kInvalidArgument,
              "cpu::attention_pool: sizes must fit in a 32-bit BLAS int");
    if (batch == 0) {
        return;
    }
    VQA_CHECK(x != nullptr && weights != nullptr && z != nullptr, kInvalidArgument,
              "cpu::attention_pool: x, weights and z must not be null");
    if (offsets != nullptr) {
        VQA_CHECK(offsets[0] == 0, kInvalidArgument, "cpu::attention_pool: offsets[0] must be 0, got ", offsets[0]);
        for (int64_t b = 0; b < batch; ++b) {
            const int64_t count = int64_t{offsets[b + 1]} - offsets[b];
            VQA_CHECK(count >= 1 && count <= seq_len, kInvalidArgument, "cpu::attention_pool: packed sample ", b,
                      " has ", count, " positions, expected 1..", seq_len);
        }
    }
    // Samples side by side on OpenMP threads while the per-sample GEMM stays on the calling thread in OpenBLAS;
    // otherwise one sample at a time, each GEMM on OpenBLAS's threads (see gemm_runs_single_threaded).
#pragma omp parallel for schedule(static) if (gemm_runs_single_threaded(glimpses, dim, seq_len))
    for (int64_t b = 0; b < batch; ++b) {
        const int64_t first = offsets != nullptr ? offsets[b] : b * seq_len;  // the sample's first row
        const int64_t count = offsets != nullptr ? offsets[b + 1] - offsets[b] : seq_len;
        float* w_b = weights + first * glimpses;
        const uint8_t* mask_b = mask != nullptr ? mask + first : nullptr;
        for (int64_t g = 0; g < glimpses; ++g) {
            // glimpse g is column g of [L, G]: elements G apart
            masked_softmax_row(w_b + g, mask_b, w_b + g, count, glimpses, 1.0f, masked_row);
        }
        // z[b] [G, d] = w_bᵀ [G, L] · x[b] [L, d]
        gemm(true, false, glimpses, dim, count, 1.0f, w_b, glimpses, x + first * dim, dim, 0.0f, z + b * glimpses * dim,
             dim);
    }
}

}  // namespace vqa::cpu

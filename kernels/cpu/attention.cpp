#include "kernels/cpu/attention.h"

#include <algorithm>
#include <climits>

#include "kernels/check.h"
#include "kernels/cpu/linear.h"

namespace vqa::cpu {

void attention(const AttentionParams& params,
               const float* q,
               const float* k,
               const float* v,
               const uint8_t* mask,
               float* o,
               float* probs) {
    const AttentionParams& p = params;
    VQA_CHECK(p.batch >= 0 && p.heads >= 1 && p.q_len >= 0 && p.kv_len >= 1 && p.head_dim >= 1, kInvalidArgument,
              "cpu::attention: expected B >= 0, H >= 1, Lq >= 0, Lk >= 1, Dh >= 1, got B=", p.batch, " H=", p.heads,
              " Lq=", p.q_len, " Lk=", p.kv_len, " Dh=", p.head_dim);
    VQA_CHECK(p.q.row >= p.head_dim && p.k.row >= p.head_dim && p.v.row >= p.head_dim && p.o.row >= p.head_dim,
              kInvalidArgument, "cpu::attention: row strides must be >= Dh (", p.head_dim, "); got q=", p.q.row,
              " k=", p.k.row, " v=", p.v.row, " o=", p.o.row);
    if (p.batch == 0 || p.q_len == 0) {
        return;
    }
    VQA_CHECK(q != nullptr && k != nullptr && v != nullptr && o != nullptr && probs != nullptr, kInvalidArgument,
              "cpu::attention: q, k, v, o and probs (the score workspace) must not be null");
    // gemm() throws on sizes a BLAS int cannot hold; check here, once, because an exception must not leave the
    // parallel region.
    VQA_CHECK(std::max({p.q_len, p.kv_len, p.head_dim, p.q.row, p.k.row, p.v.row, p.o.row}) <= INT_MAX,
              kInvalidArgument, "cpu::attention: sizes and row strides must fit in a 32-bit BLAS int");

    if (p.packed()) {
        VQA_CHECK(p.kv_start != nullptr && p.kv_count != nullptr && p.q_offsets[0] == 0, kInvalidArgument,
                  "cpu::attention: packed sequences need kv_start, kv_count and q_offsets[0] = 0");
        for (int64_t b = 0; b < p.batch; ++b) {
            const int64_t q_count = int64_t{p.q_offsets[b + 1]} - p.q_offsets[b];
            VQA_CHECK(q_count >= 0 && q_count <= p.q_len && p.kv_count[b] >= 1 && p.kv_count[b] <= p.kv_len &&
                          p.kv_start[b] >= 0,
                      kInvalidArgument, "cpu::attention: packed sequence ", b, " has ", q_count, " queries and ",
                      p.kv_count[b], " keys from row ", p.kv_start[b], "; expected 0..", p.q_len, ", 1..", p.kv_len,
                      " and a row >= 0");
        }
    }

    // Small per-head GEMMs run single-threaded inside OpenBLAS, so (b, h) pairs run side by side on OpenMP threads;
    // larger ones run one pair at a time on OpenBLAS's threads (see gemm_runs_single_threaded).
    const bool parallel_pairs = gemm_runs_single_threaded(p.q_len, p.kv_len, p.head_dim);
    const int64_t pairs = p.batch * p.heads;
#pragma omp parallel for schedule(static) if (parallel_pairs)
    for (int64_t pair = 0; pair < pairs; ++pair) {
        const int64_t b = pair / p.heads;
        const int64_t h = pair % p.heads;
        // Dense: sequence b starts at b·batch; packed: at its first row, with its own counts.
        int64_t q_first = b * p.q.batch;
        int64_t o_first = b * p.o.batch;
        int64_t k_first = b * p.k.batch;
        int64_t v_first = b * p.v.batch;
        int64_t q_count = p.q_len;
        int64_t kv_count = p.kv_len;
        const uint8_t* mask_b = mask != nullptr ? mask + b * p.kv_len : nullptr;
        if (p.packed()) {
            q_first = p.q_offsets[b] * p.q.row;
            o_first = p.q_offsets[b] * p.o.row;
            k_first = p.kv_start[b] * p.k.row;
            v_first = p.kv_start[b] * p.v.row;
            q_count = p.q_offsets[b + 1] - p.q_offsets[b];
            kv_count = p.kv_count[b];
            mask_b = mask != nullptr ? mask + p.kv_start[b] : nullptr;
        }
        const float* q_bh = q + q_first + h * p.q.head;
        const float* k_bh = k + k_first + h * p.k.head;
        const float* v_bh = v + v_first + h * p.v.head;
        float* o_bh = o + o_first + h * p.o.head;
        float* p_bh = probs + pair * p.q_len * p.kv_len;  // row i of the block at p_bh + i·Lk
        if (q_count == 0) {
            continue;
        }

        gemm(false, true, q_count, kv_count, p.head_dim, p.scale, q_bh, p.q.row, k_bh, p.k.row, 0.0f, p_bh, p.kv_len);
        for (int64_t i = 0; i < q_count; ++i) {
            float* row = p_bh + i * p.kv_len;
            masked_softmax_row(row, mask_b, row, kv_count, 1, 1.0f, p.masked_row);
        }
        gemm(false, false, q_count, p.head_dim, kv_count, 1.0f, p_bh, p.kv_len, v_bh, p.v.row, 0.0f, o_bh, p.o.row);
    }
}

}  // namespace vqa::cpu

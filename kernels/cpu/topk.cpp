#include "kernels/cpu/topk.h"

#include <climits>
#include <cmath>

#include "kernels/check.h"
#include "kernels/cpu/masked_softmax.h"

namespace vqa::cpu {
namespace {

// Below this many elements a pass is faster than waking the OpenMP team.
constexpr int64_t kParallelMinElements = int64_t{1} << 15;

// Whether (value a, id a) ranks before (value b, id b): larger value first, then lower id; NaN last.
bool ranks_before(float a, int64_t id_a, float b, int64_t id_b) {
    if (std::isnan(a) || std::isnan(b)) {
        return !std::isnan(a) || (std::isnan(b) && id_a < id_b);
    }
    return a > b || (a == b && id_a < id_b);
}

}  // namespace

void topk(const float* scores, int64_t batch, int64_t num_scores, int64_t k, int32_t* ids, float* values) {
    VQA_CHECK(batch >= 0 && num_scores >= 1 && num_scores <= INT32_MAX && k >= 1 && k <= num_scores, kInvalidArgument,
              "cpu::topk: expected B >= 0 and 1 <= k <= A < 2^31, got B=", batch, " A=", num_scores, " k=", k);
    if (batch == 0) {
        return;
    }
    VQA_CHECK(scores != nullptr && ids != nullptr && values != nullptr, kInvalidArgument,
              "cpu::topk: scores, ids and values must not be null");
#pragma omp parallel for schedule(static) if (batch * num_scores >= kParallelMinElements)
    for (int64_t b = 0; b < batch; ++b) {
        const float* row = scores + b * num_scores;
        int32_t* row_ids = ids + b * k;
        float* row_values = values + b * k;
        int64_t filled = 0;
        // Insertion into the sorted running top-k. Ids come in increasing order, so an equal value never
        // passes one already kept: ties stay by lower id.
        for (int64_t a = 0; a < num_scores; ++a) {
            const float v = row[a];
            if (filled == k && !ranks_before(v, a, row_values[k - 1], row_ids[k - 1])) {
                continue;
            }
            int64_t pos = filled < k ? filled++ : k - 1;
            for (; pos > 0 && ranks_before(v, a, row_values[pos - 1], row_ids[pos - 1]); --pos) {
                row_values[pos] = row_values[pos - 1];
                row_ids[pos] = row_ids[pos - 1];
            }
            row_values[pos] = v;
            row_ids[pos] = static_cast<int32_t>(a);
        }
    }
}

void softmax_rows(const float* x, float* y, int64_t rows, int64_t cols) {
    MaskedSoftmaxParams params;
    params.rows = rows;
    params.cols = cols;
    masked_softmax(params, x, nullptr, y);
}

void sigmoid(const float* x, float* y, int64_t n) {
    VQA_CHECK(n >= 0, kInvalidArgument, "cpu::sigmoid: expected n >= 0, got ", n);
    if (n == 0) {
        return;
    }
    VQA_CHECK(x != nullptr && y != nullptr, kInvalidArgument, "cpu::sigmoid: x and y must not be null");
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
    for (int64_t i = 0; i < n; ++i) {
        y[i] = 1.0f / (1.0f + std::exp(-x[i]));
    }
}

}  // namespace vqa::cpu

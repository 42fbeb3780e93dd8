#include "kernels/cpu/embedding_gather.h"

#include <algorithm>

#include "kernels/check.h"

namespace vqa::cpu {
namespace {

// Below this many elements the copy is faster than waking the OpenMP team.
constexpr int64_t kParallelMinElements = int64_t{1} << 15;

template <typename Id>
void gather_rows(const Id* ids, int64_t n, const float* table, int64_t vocab_size, int64_t dim, float* out) {
    VQA_CHECK(n >= 0 && vocab_size >= 0 && dim >= 1, kInvalidArgument,
              "cpu::embedding_gather: expected n, V >= 0 and E >= 1, got n=", n, " V=", vocab_size, " E=", dim);
    if (n == 0) {
        return;
    }
    VQA_CHECK(ids != nullptr && table != nullptr && out != nullptr, kInvalidArgument,
              "cpu::embedding_gather: ids, table and out must not be null");
    for (int64_t i = 0; i < n; ++i) {
        const int64_t id = static_cast<int64_t>(ids[i]);
        VQA_CHECK(id >= 0 && id < vocab_size, kInvalidArgument, "cpu::embedding_gather: id ", id, " at position ", i,
                  " is outside the table [0, ", vocab_size, ")");
    }
#pragma omp parallel for schedule(static) if (n * dim >= kParallelMinElements)
    for (int64_t i = 0; i < n; ++i) {
        std::copy_n(table + static_cast<int64_t>(ids[i]) * dim, dim, out + i * dim);
    }
}

}  // namespace

void embedding_gather(const int32_t* ids, int64_t n, const float* table, int64_t vocab_size, int64_t dim, float* out) {
    gather_rows(ids, n, table, vocab_size, dim, out);
}

void embedding_gather(const int64_t* ids, int64_t n, const float* table, int64_t vocab_size, int64_t dim, float* out) {
    gather_rows(ids, n, table, vocab_size, dim, out);
}

}  // namespace vqa::cpu

#include "kernels/cpu/split_heads.h"

#include <algorithm>
#include <cstdint>

namespace vqa::cpu {
namespace {

// Below this many elements the copy is faster than waking the OpenMP team.
constexpr int64_t kParallelMinElements = int64_t{1} << 16;

// Copies every head row between x [B, L, H*Dh] and y [B, H, L, Dh]; kToHeads picks the direction.
template <bool kToHeads>
void permute_heads(const float* src, float* dst, const HeadsShape& shape) {
    if (shape.numel() == 0) {
        return;
    }
    const int64_t rows = int64_t{shape.batch} * shape.seq_len;
    const int64_t x_row_stride = shape.row_stride();
    const int heads = shape.num_heads;
    const int head_dim = shape.head_dim;
    const int seq_len = shape.seq_len;
#pragma omp parallel for schedule(static) if (shape.numel() >= kParallelMinElements)
    for (int64_t row = 0; row < rows; ++row) {
        const int64_t b = row / seq_len;
        const int64_t l = row % seq_len;
        for (int h = 0; h < heads; ++h) {
            const int64_t x_offset = row * x_row_stride + int64_t{h} * head_dim;
            const int64_t y_offset = ((b * heads + h) * seq_len + l) * head_dim;
            if constexpr (kToHeads) {
                std::copy_n(src + x_offset, head_dim, dst + y_offset);
            } else {
                std::copy_n(src + y_offset, head_dim, dst + x_offset);
            }
        }
    }
}

}  // namespace

void split_heads(const float* x, float* y, const HeadsShape& shape) {
    check_heads_args(shape, x, y, sizeof(float), "cpu::split_heads");
    permute_heads<true>(x, y, shape);
}

void merge_heads(const float* y, float* x, const HeadsShape& shape) {
    check_heads_args(shape, x, y, sizeof(float), "cpu::merge_heads");
    permute_heads<false>(y, x, shape);
}

}  // namespace vqa::cpu

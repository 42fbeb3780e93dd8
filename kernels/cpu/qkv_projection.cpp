#include "kernels/cpu/qkv_projection.h"

#include <vector>

#include "kernels/cpu/linear.h"

namespace vqa::cpu {

void fused_qkv_projection(const HeadProjectionParams& params,
                          const float* x,
                          const float* weight,
                          const float* bias,
                          const HeadOutputs<float>& outputs) {
    check_head_projection_args(params, x, weight, outputs, "cpu::fused_qkv_projection");
    const int64_t rows = params.rows();
    const int64_t cols = params.cols();
    if (rows == 0) {
        return;
    }
    std::vector<float> y(static_cast<size_t>(rows * cols));  // [M, N]
    gemm(false, true, rows, cols, params.in_features, 1.0f, x, params.x_stride(), weight, params.in_features, 0.0f,
         y.data(), cols);
    const int64_t group_cols = params.group_cols();
    const int64_t head_dim = params.head_dim;
    for (int64_t m = 0; m < rows; ++m) {
        const int64_t b = m / params.seq_len;
        const int64_t l = m % params.seq_len;
        for (int64_t n = 0; n < cols; ++n) {
            const int64_t g = n / group_cols;
            const int64_t h = (n % group_cols) / head_dim;
            const int64_t e = n % head_dim;
            const float value = y[m * cols + n] + (bias != nullptr ? bias[n] : 0.0f);
            outputs.group[g][((b * params.num_heads + h) * params.seq_len + l) * head_dim + e] =
                value * params.scales[g];
        }
    }
}

}  // namespace vqa::cpu

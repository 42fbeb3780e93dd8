#include "kernels/cpu/conv2d.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/check.h"
#include "kernels/cpu/linear.h"

namespace vqa::cpu {
namespace {

// Below this many elements a pass is faster than waking the OpenMP team.
constexpr int64_t kParallelMinElements = int64_t{1} << 14;

bool is_pointwise(const Conv2dParams& p) {
    return p.kernel_h == 1 && p.kernel_w == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0;
}

void check_conv_params(const Conv2dParams& p) {
    VQA_CHECK(p.batch >= 0 && p.in_channels >= 1 && p.out_channels >= 1 && p.kernel_h >= 1 && p.kernel_w >= 1 &&
                  p.stride_h >= 1 && p.stride_w >= 1 && p.pad_h >= 0 && p.pad_w >= 0,
              kInvalidArgument,
              "cpu::conv2d: expected N >= 0, Cin, Cout, kernel, stride >= 1 and padding >= 0, got N=", p.batch,
              " Cin=", p.in_channels, " Cout=", p.out_channels, " kernel=", p.kernel_h, "x", p.kernel_w,
              " stride=", p.stride_h, "x", p.stride_w, " pad=", p.pad_h, "x", p.pad_w);
    VQA_CHECK(p.in_h + 2 * p.pad_h >= p.kernel_h && p.in_w + 2 * p.pad_w >= p.kernel_w, kInvalidArgument,
              "cpu::conv2d: the padded input (", p.in_h + 2 * p.pad_h, "x", p.in_w + 2 * p.pad_w,
              ") is smaller than the kernel (", p.kernel_h, "x", p.kernel_w, ")");
}

// col[(c·kh + i)·kw + j, oy·Wo + ox] = x[c, oy·sh − ph + i, ox·sw − pw + j], 0 outside the image.
void im2col(const Conv2dParams& p, const float* image, float* col) {
    const int64_t out_h = p.out_h();
    const int64_t out_w = p.out_w();
    const int64_t col_rows = p.in_channels * p.kernel_h * p.kernel_w;
#pragma omp parallel for schedule(static) if (col_rows * out_h * out_w >= kParallelMinElements)
    for (int64_t r = 0; r < col_rows; ++r) {
        const int64_t c = r / (p.kernel_h * p.kernel_w);
        const int64_t i = (r / p.kernel_w) % p.kernel_h;
        const int64_t j = r % p.kernel_w;
        const float* plane = image + c * p.in_h * p.in_w;
        float* dst = col + r * out_h * out_w;
        for (int64_t oy = 0; oy < out_h; ++oy) {
            const int64_t iy = oy * p.stride_h - p.pad_h + i;
            float* dst_row = dst + oy * out_w;
            if (iy < 0 || iy >= p.in_h) {
                std::fill_n(dst_row, out_w, 0.0f);
                continue;
            }
            const float* src_row = plane + iy * p.in_w;
            for (int64_t ox = 0; ox < out_w; ++ox) {
                const int64_t ix = ox * p.stride_w - p.pad_w + j;
                dst_row[ox] = ix >= 0 && ix < p.in_w ? src_row[ix] : 0.0f;
            }
        }
    }
}

}  // namespace

int64_t conv2d_scratch_floats(const Conv2dParams& params) {
    check_conv_params(params);
    if (is_pointwise(params)) {
        return 0;
    }
    return params.in_channels * params.kernel_h * params.kernel_w * params.out_h() * params.out_w();
}

void conv2d(const Conv2dParams& params,
            const float* x,
            const float* weight,
            const float* bias,
            const float* residual,
            float* y,
            float* scratch) {
    const Conv2dParams& p = params;
    const int64_t scratch_floats = conv2d_scratch_floats(p);  // checks the params
    if (p.batch == 0) {
        return;
    }
    VQA_CHECK(x != nullptr && weight != nullptr && y != nullptr, kInvalidArgument,
              "cpu::conv2d: x, weight and y must not be null");
    VQA_CHECK(scratch_floats == 0 || scratch != nullptr, kInvalidArgument,
              "cpu::conv2d: this convolution needs a scratch of conv2d_scratch_floats() = ", scratch_floats, " floats");
    VQA_CHECK(y != x, kInvalidArgument, "cpu::conv2d: y must not alias x");
    const int64_t in_size = p.in_channels * p.in_h * p.in_w;
    const int64_t out_pixels = p.out_h() * p.out_w();
    const int64_t out_size = p.out_channels * out_pixels;
    const int64_t fan_in = p.in_channels * p.kernel_h * p.kernel_w;
    const float beta = residual != nullptr ? 1.0f : 0.0f;
    if (residual != nullptr && residual != y) {
        std::memcpy(y, residual, sizeof(float) * static_cast<size_t>(p.batch * out_size));
    }
    for (int64_t n = 0; n < p.batch; ++n) {
        const float* image = x + n * in_size;
        const float* col = image;  // pointwise: the image [Cin, H·W] already is the im2col matrix
        if (scratch_floats != 0) {
            im2col(p, image, scratch);
            col = scratch;
        }
        // y[n] [Cout, Ho·Wo] = weight [Cout, fan_in] · col [fan_in, Ho·Wo] (+ the residual already in y)
        gemm(false, false, p.out_channels, out_pixels, fan_in, 1.0f, weight, fan_in, col, out_pixels, beta,
             y + n * out_size, out_pixels);
    }
    if (bias == nullptr && p.act == Activation::kNone) {
        return;
    }
    const int64_t planes = p.batch * p.out_channels;
#pragma omp parallel for schedule(static) if (planes * out_pixels >= kParallelMinElements)
    for (int64_t plane = 0; plane < planes; ++plane) {
        const float b = bias != nullptr ? bias[plane % p.out_channels] : 0.0f;
        float* dst = y + plane * out_pixels;
        for (int64_t i = 0; i < out_pixels; ++i) {
            dst[i] = apply_activation(dst[i] + b, p.act);
        }
    }
}

void fold_batch_norm(const float* weight,
                     const float* bias,
                     const float* gamma,
                     const float* beta,
                     const float* mean,
                     const float* var,
                     float eps,
                     int64_t out_channels,
                     int64_t fan_in,
                     float* folded_weight,
                     float* folded_bias) {
    VQA_CHECK(out_channels >= 0 && fan_in >= 1, kInvalidArgument,
              "cpu::fold_batch_norm: expected Cout >= 0 and fan_in >= 1, got Cout=", out_channels, " fan_in=", fan_in);
    VQA_CHECK(weight != nullptr && gamma != nullptr && beta != nullptr && mean != nullptr && var != nullptr &&
                  folded_weight != nullptr && folded_bias != nullptr,
              kInvalidArgument, "cpu::fold_batch_norm: only bias may be null");
    for (int64_t c = 0; c < out_channels; ++c) {
        VQA_CHECK(static_cast<double>(var[c]) + eps > 0.0, kInvalidArgument,
                  "cpu::fold_batch_norm: running_var + eps must be > 0, got ", var[c], " + ", eps, " at channel ", c);
        const double s = static_cast<double>(gamma[c]) / std::sqrt(static_cast<double>(var[c]) + eps);
        const double b = bias != nullptr ? bias[c] : 0.0;
        for (int64_t i = 0; i < fan_in; ++i) {
            folded_weight[c * fan_in + i] = static_cast<float>(weight[c * fan_in + i] * s);
        }
        folded_bias[c] = static_cast<float>((b - mean[c]) * s + beta[c]);
    }
}

void max_pool2d(const MaxPool2dParams& params, const float* x, float* y) {
    const MaxPool2dParams& p = params;
    VQA_CHECK(p.planes >= 0 && p.kernel_h >= 1 && p.kernel_w >= 1 && p.stride_h >= 1 && p.stride_w >= 1 &&
                  p.pad_h >= 0 && p.pad_w >= 0 && 2 * p.pad_h <= p.kernel_h && 2 * p.pad_w <= p.kernel_w,
              kInvalidArgument,
              "cpu::max_pool2d: expected kernel, stride >= 1 and 0 <= padding <= kernel / 2, got kernel=", p.kernel_h,
              "x", p.kernel_w, " stride=", p.stride_h, "x", p.stride_w, " pad=", p.pad_h, "x", p.pad_w);
    VQA_CHECK(p.in_h + 2 * p.pad_h >= p.kernel_h && p.in_w + 2 * p.pad_w >= p.kernel_w, kInvalidArgument,
              "cpu::max_pool2d: the padded input (", p.in_h + 2 * p.pad_h, "x", p.in_w + 2 * p.pad_w,
              ") is smaller than the kernel (", p.kernel_h, "x", p.kernel_w, ")");
    if (p.planes == 0) {
        return;
    }
    VQA_CHECK(x != nullptr && y != nullptr, kInvalidArgument, "cpu::max_pool2d: x and y must not be null");
    const int64_t out_h = p.out_h();
    const int64_t out_w = p.out_w();
#pragma omp parallel for schedule(static) if (p.planes * out_h * out_w >= kParallelMinElements)
    for (int64_t plane = 0; plane < p.planes; ++plane) {
        const float* src = x + plane * p.in_h * p.in_w;
        float* dst = y + plane * out_h * out_w;
        for (int64_t oy = 0; oy < out_h; ++oy) {
            // Clip the window to the image: the −inf padding never wins, and pad <= kernel / 2 keeps every
            // window non-empty.
            const int64_t y0 = std::max<int64_t>(oy * p.stride_h - p.pad_h, 0);
            const int64_t y1 = std::min(oy * p.stride_h - p.pad_h + p.kernel_h, p.in_h);
            for (int64_t ox = 0; ox < out_w; ++ox) {
                const int64_t x0 = std::max<int64_t>(ox * p.stride_w - p.pad_w, 0);
                const int64_t x1 = std::min(ox * p.stride_w - p.pad_w + p.kernel_w, p.in_w);
                float best = -std::numeric_limits<float>::infinity();
                for (int64_t iy = y0; iy < y1; ++iy) {
                    for (int64_t ix = x0; ix < x1; ++ix) {
                        const float v = src[iy * p.in_w + ix];
                        // NaN wins, as in PyTorch
                        best = (v > best || std::isnan(v)) ? v : best;
                    }
                }
                dst[oy * out_w + ox] = best;
            }
        }
    }
}

}  // namespace vqa::cpu

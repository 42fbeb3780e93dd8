// 2-D convolution (im2col + sgemm) and max pooling on NCHW fp32 tensors, and BatchNorm folding
// (docs/model-format.md §4.2, §4.3: the CNN and ResNet trunks).
#pragma once

#include <cstdint>

#include "kernels/cpu/bias_act.h"

namespace vqa::cpu {

struct Conv2dParams {
    int64_t batch = 1;         // N
    int64_t in_channels = 0;   // Cin
    int64_t in_h = 0;          // H
    int64_t in_w = 0;          // W
    int64_t out_channels = 0;  // Cout
    int64_t kernel_h = 1;      // kh
    int64_t kernel_w = 1;      // kw
    int64_t stride_h = 1;
    int64_t stride_w = 1;
    int64_t pad_h = 0;  // zero padding, each side
    int64_t pad_w = 0;
    Activation act = Activation::kNone;  // applied after bias and residual

    int64_t out_h() const { return (in_h + 2 * pad_h - kernel_h) / stride_h + 1; }  // Ho
    int64_t out_w() const { return (in_w + 2 * pad_w - kernel_w) / stride_w + 1; }  // Wo
};

// Floats of the scratch that conv2d needs: the im2col matrix of one image, [Cin·kh·kw, Ho·Wo]; 0 for a 1×1,
// stride 1, unpadded convolution, which multiplies the input directly.
int64_t conv2d_scratch_floats(const Conv2dParams& params);

// y = act(conv(x, weight) + bias + residual). bias and residual may be null; y may alias residual (the ResNet
// block's `relu(bn(conv(x)) + identity)` in place), not x. Images run one after another, each one GEMM on
// OpenBLAS's threads; im2col runs on OpenMP threads.
void conv2d(const Conv2dParams& params,
            const float* x,         // [N, Cin, H, W]
            const float* weight,    // [Cout, Cin, kh, kw]
            const float* bias,      // [Cout] or null
            const float* residual,  // [N, Cout, Ho, Wo] or null
            float* y,               // [N, Cout, Ho, Wo]
            float* scratch);        // conv2d_scratch_floats(params) floats; may be null when that is 0

// Folds an inference BatchNorm, (z − mean) / sqrt(var + eps) · gamma + beta, into the convolution that feeds it:
// weight' = weight · s, bias' = (bias − mean) · s + beta with s = gamma / sqrt(var + eps), computed in double.
// Done once at load. A null bias counts as 0. folded_weight/folded_bias may alias weight/bias.
void fold_batch_norm(const float* weight,  // [Cout, fan_in], fan_in = Cin·kh·kw
                     const float* bias,    // [Cout] or null
                     const float* gamma,   // [Cout]
                     const float* beta,    // [Cout]
                     const float* mean,    // [Cout] running mean
                     const float* var,     // [Cout] running variance
                     float eps,
                     int64_t out_channels,
                     int64_t fan_in,
                     float* folded_weight,  // [Cout, fan_in]
                     float* folded_bias);   // [Cout]

struct MaxPool2dParams {
    int64_t planes = 0;  // N·C: every plane pooled on its own
    int64_t in_h = 0;    // H
    int64_t in_w = 0;    // W
    int64_t kernel_h = 2;
    int64_t kernel_w = 2;
    int64_t stride_h = 2;
    int64_t stride_w = 2;
    int64_t pad_h = 0;  // −inf padding, each side, at most kernel/2 (PyTorch's rule)
    int64_t pad_w = 0;

    int64_t out_h() const { return (in_h + 2 * pad_h - kernel_h) / stride_h + 1; }  // Ho (floor mode)
    int64_t out_w() const { return (in_w + 2 * pad_w - kernel_w) / stride_w + 1; }  // Wo (floor mode)
};

// PyTorch MaxPool2d (dilation 1, ceil_mode False): y = max over each window of the valid input elements.
void max_pool2d(const MaxPool2dParams& params,
                const float* x,  // [planes, H, W]
                float* y);       // [planes, Ho, Wo]

}  // namespace vqa::cpu

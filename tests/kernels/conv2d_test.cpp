// CPU conv2d, max_pool2d and fold_batch_norm against direct double-precision loops: the ResNet stem (7×7,
// stride 2, padding 3), 3×3 and 1×1 convolutions with every epilogue, the 3×3/2 pad 1 max pool and the
// conv + BatchNorm = folded conv identity.
#include "kernels/cpu/conv2d.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "tests/kernels/test_util.h"
#include "vqa/error.h"

namespace vqa::cpu {
namespace {

using test::all_close;
using test::random_vector;

// fp32 GEMM over fan_in ≤ 147 terms of magnitude < 1 against double: errors up to a few 1e-6 where the exact
// value is near 0, so atol 1e-5; rtol 1e-5.
constexpr test::Tolerance kConvTolerance{1e-7, 1e-5, 1e-5};

struct ConvCase {
    const char* name;
    int64_t N, Cin, H, W, Cout, k, stride, pad;
};

using ConvParam = std::tuple<ConvCase, bool, bool, Activation>;  // shape, bias, residual, activation

std::string conv_case_name(const testing::TestParamInfo<ConvParam>& info) {
    const auto& [c, bias, residual, act] = info.param;
    return std::string(c.name) + "_N" + std::to_string(c.N) + "_Cin" + std::to_string(c.Cin) + "_H" +
           std::to_string(c.H) + "_W" + std::to_string(c.W) + "_Cout" + std::to_string(c.Cout) + (bias ? "_bias" : "") +
           (residual ? "_residual" : "") + (act == Activation::kRelu ? "_relu" : "");
}

Conv2dParams to_params(const ConvCase& c, Activation act) {
    Conv2dParams p;
    p.batch = c.N;
    p.in_channels = c.Cin;
    p.in_h = c.H;
    p.in_w = c.W;
    p.out_channels = c.Cout;
    p.kernel_h = p.kernel_w = c.k;
    p.stride_h = p.stride_w = c.stride;
    p.pad_h = p.pad_w = c.pad;
    p.act = act;
    return p;
}

// Direct convolution in double, without bias or activation: [N, Cout, Ho, Wo].
std::vector<double> reference_conv(const Conv2dParams& p, const std::vector<float>& x, const std::vector<float>& w) {
    const int64_t Ho = p.out_h(), Wo = p.out_w();
    std::vector<double> y(p.batch * p.out_channels * Ho * Wo, 0.0);
    for (int64_t n = 0; n < p.batch; ++n) {
        for (int64_t co = 0; co < p.out_channels; ++co) {
            for (int64_t oy = 0; oy < Ho; ++oy) {
                for (int64_t ox = 0; ox < Wo; ++ox) {
                    double acc = 0.0;
                    for (int64_t ci = 0; ci < p.in_channels; ++ci) {
                        for (int64_t i = 0; i < p.kernel_h; ++i) {
                            for (int64_t j = 0; j < p.kernel_w; ++j) {
                                const int64_t iy = oy * p.stride_h - p.pad_h + i;
                                const int64_t ix = ox * p.stride_w - p.pad_w + j;
                                if (iy >= 0 && iy < p.in_h && ix >= 0 && ix < p.in_w) {
                                    acc +=
                                        static_cast<double>(x[((n * p.in_channels + ci) * p.in_h + iy) * p.in_w + ix]) *
                                        w[((co * p.in_channels + ci) * p.kernel_h + i) * p.kernel_w + j];
                                }
                            }
                        }
                    }
                    y[((n * p.out_channels + co) * Ho + oy) * Wo + ox] = acc;
                }
            }
        }
    }
    return y;
}

class Conv2dTest : public testing::TestWithParam<ConvParam> {};

TEST_P(Conv2dTest, MatchesDirectConvolution) {
    const auto& [c, with_bias, with_residual, act] = GetParam();
    const Conv2dParams p = to_params(c, act);
    const int64_t Ho = p.out_h(), Wo = p.out_w();
    const std::vector<float> x = random_vector(c.N * c.Cin * c.H * c.W, 1);
    const std::vector<float> w = random_vector(c.Cout * c.Cin * c.k * c.k, 2);
    const std::vector<float> b = random_vector(c.Cout, 3);
    const std::vector<float> r = random_vector(c.N * c.Cout * Ho * Wo, 4);
    std::vector<float> scratch(conv2d_scratch_floats(p));
    test::poison_nan(scratch);
    std::vector<float> y(c.N * c.Cout * Ho * Wo);
    test::poison_nan(y);
    conv2d(p, x.data(), w.data(), with_bias ? b.data() : nullptr, with_residual ? r.data() : nullptr, y.data(),
           scratch.data());

    const std::vector<double> conv = reference_conv(p, x, w);
    std::vector<float> expected(y.size());
    for (size_t i = 0; i < y.size(); ++i) {
        const int64_t co = static_cast<int64_t>(i) / (Ho * Wo) % c.Cout;
        double v = conv[i] + (with_bias ? b[co] : 0.0) + (with_residual ? r[i] : 0.0);
        v = act == Activation::kRelu ? std::max(v, 0.0) : v;
        expected[i] = static_cast<float>(v);
    }
    EXPECT_TRUE(all_close(y, expected, kConvTolerance, {c.N, c.Cout, Ho, Wo}));
}

INSTANTIATE_TEST_SUITE_P(Shapes,
                         Conv2dTest,
                         testing::Combine(testing::Values(ConvCase{"stem7x7s2p3", 2, 3, 33, 32, 8, 7, 2, 3},
                                                          ConvCase{"conv3x3s1p1", 1, 5, 7, 9, 3, 3, 1, 1},
                                                          ConvCase{"conv3x3s2p1", 2, 4, 9, 8, 6, 3, 2, 1},
                                                          ConvCase{"conv1x1s1", 3, 31, 5, 7, 33, 1, 1, 0},
                                                          ConvCase{"conv1x1s2", 2, 7, 9, 9, 5, 1, 2, 0},
                                                          ConvCase{"tiny", 1, 1, 1, 1, 1, 1, 1, 0}),
                                          testing::Bool(),
                                          testing::Bool(),
                                          testing::Values(Activation::kNone, Activation::kRelu)),
                         conv_case_name);

TEST(Conv2dReference, ResidualInPlace) {
    const ConvCase c{"block", 2, 4, 6, 6, 4, 3, 1, 1};
    const Conv2dParams p = to_params(c, Activation::kRelu);
    const std::vector<float> x = random_vector(c.N * c.Cin * c.H * c.W, 5);
    const std::vector<float> w = random_vector(c.Cout * c.Cin * 9, 6);
    const std::vector<float> identity = random_vector(c.N * c.Cout * c.H * c.W, 7);
    std::vector<float> scratch(conv2d_scratch_floats(p));
    std::vector<float> expected(identity.size());
    conv2d(p, x.data(), w.data(), nullptr, identity.data(), expected.data(), scratch.data());
    std::vector<float> y = identity;  // relu(conv(x) + y) in place
    conv2d(p, x.data(), w.data(), nullptr, y.data(), y.data(), scratch.data());
    EXPECT_TRUE(all_close(y, expected, test::kExact));
}

TEST(Conv2dReference, PointwiseNeedsNoScratchAndMissingScratchIsRejected) {
    Conv2dParams p = to_params({"pw", 1, 3, 4, 4, 2, 1, 1, 0}, Activation::kNone);
    EXPECT_EQ(conv2d_scratch_floats(p), 0);
    p.stride_h = p.stride_w = 2;
    EXPECT_EQ(conv2d_scratch_floats(p), 3 * 2 * 2);
    std::vector<float> x(48, 1.0f), w(6, 1.0f), y(8);
    EXPECT_THROW(conv2d(p, x.data(), w.data(), nullptr, nullptr, y.data(), nullptr), Error);
    p.kernel_h = p.kernel_w = 7;
    EXPECT_THROW(conv2d_scratch_floats(p), Error);  // 4×4 input, no padding: smaller than the kernel
}

TEST(FoldBatchNorm, FoldedConvMatchesConvThenBatchNorm) {
    const ConvCase c{"stem", 2, 3, 17, 15, 8, 7, 2, 3};
    const Conv2dParams p = to_params(c, Activation::kNone);
    const int64_t fan_in = c.Cin * c.k * c.k, Ho = p.out_h(), Wo = p.out_w();
    const std::vector<float> x = random_vector(c.N * c.Cin * c.H * c.W, 8);
    const std::vector<float> w = random_vector(c.Cout * fan_in, 9);
    const std::vector<float> gamma = random_vector(c.Cout, 10, 0.5f, 2.0f);
    const std::vector<float> beta = random_vector(c.Cout, 11);
    const std::vector<float> mean = random_vector(c.Cout, 12);
    const std::vector<float> var = random_vector(c.Cout, 13, 0.1f, 3.0f);
    const float eps = 1e-5f;
    for (const bool with_bias : {false, true}) {
        SCOPED_TRACE(with_bias ? "conv with bias" : "conv without bias");
        const std::vector<float> b = random_vector(c.Cout, 14);
        std::vector<float> folded_w = w;  // folded in place, as the loader does
        std::vector<float> folded_b(c.Cout);
        if (with_bias) {
            folded_b = b;
        }
        fold_batch_norm(folded_w.data(), with_bias ? folded_b.data() : nullptr, gamma.data(), beta.data(), mean.data(),
                        var.data(), eps, c.Cout, fan_in, folded_w.data(), folded_b.data());
        std::vector<float> scratch(conv2d_scratch_floats(p));
        std::vector<float> y(c.N * c.Cout * Ho * Wo);
        test::poison_nan(y);
        conv2d(p, x.data(), folded_w.data(), folded_b.data(), nullptr, y.data(), scratch.data());

        const std::vector<double> conv = reference_conv(p, x, w);
        std::vector<float> expected(y.size());
        for (size_t i = 0; i < y.size(); ++i) {
            const int64_t co = static_cast<int64_t>(i) / (Ho * Wo) % c.Cout;
            const double z = conv[i] + (with_bias ? b[co] : 0.0);
            expected[i] = static_cast<float>(
                (z - mean[co]) / std::sqrt(static_cast<double>(var[co]) + eps) * gamma[co] + beta[co]);
        }
        // the folded weights are rounded to fp32 once more: still within the conv tolerance
        EXPECT_TRUE(all_close(y, expected, kConvTolerance, {c.N, c.Cout, Ho, Wo}));
    }
}

struct PoolCase {
    const char* name;
    int64_t planes, H, W, k, stride, pad;
};

class MaxPool2dTest : public testing::TestWithParam<PoolCase> {};

TEST_P(MaxPool2dTest, MatchesWindowMaximum) {
    const PoolCase& c = GetParam();
    MaxPool2dParams p;
    p.planes = c.planes;
    p.in_h = c.H;
    p.in_w = c.W;
    p.kernel_h = p.kernel_w = c.k;
    p.stride_h = p.stride_w = c.stride;
    p.pad_h = p.pad_w = c.pad;
    const int64_t Ho = p.out_h(), Wo = p.out_w();
    // all negative: a zero padding would win every border window, the −inf padding never does
    const std::vector<float> x = random_vector(c.planes * c.H * c.W, 15, -2.0f, -1.0f);
    std::vector<float> y(c.planes * Ho * Wo);
    test::poison_nan(y);
    max_pool2d(p, x.data(), y.data());

    std::vector<float> expected(y.size());
    for (int64_t pl = 0; pl < c.planes; ++pl) {
        for (int64_t oy = 0; oy < Ho; ++oy) {
            for (int64_t ox = 0; ox < Wo; ++ox) {
                float best = -std::numeric_limits<float>::infinity();
                for (int64_t i = 0; i < c.k; ++i) {
                    for (int64_t j = 0; j < c.k; ++j) {
                        const int64_t iy = oy * c.stride - c.pad + i, ix = ox * c.stride - c.pad + j;
                        if (iy >= 0 && iy < c.H && ix >= 0 && ix < c.W) {
                            best = std::max(best, x[(pl * c.H + iy) * c.W + ix]);
                        }
                    }
                }
                expected[(pl * Ho + oy) * Wo + ox] = best;
            }
        }
    }
    EXPECT_TRUE(all_close(y, expected, test::kExact, {c.planes, Ho, Wo}));
}

INSTANTIATE_TEST_SUITE_P(Shapes,
                         MaxPool2dTest,
                         testing::Values(PoolCase{"resnet3x3s2p1", 6, 17, 16, 3, 2, 1},
                                         PoolCase{"resnet3x3s2p1_even", 2, 32, 32, 3, 2, 1},
                                         PoolCase{"cnn2x2s2_floor", 5, 7, 9, 2, 2, 0},
                                         PoolCase{"tiny2x2", 1, 2, 2, 2, 2, 0},
                                         PoolCase{"k3s1p0", 3, 5, 4, 3, 1, 0}),
                         [](const testing::TestParamInfo<PoolCase>& info) {
                             const PoolCase& c = info.param;
                             return std::string(c.name) + "_P" + std::to_string(c.planes) + "_H" + std::to_string(c.H) +
                                    "_W" + std::to_string(c.W);
                         });

TEST(MaxPool2dReference, RejectsPaddingAboveHalfKernel) {
    MaxPool2dParams p;
    p.planes = 1;
    p.in_h = p.in_w = 4;
    p.kernel_h = p.kernel_w = 3;
    p.pad_h = p.pad_w = 2;
    std::vector<float> x(16, 1.0f), y(16);
    EXPECT_THROW(max_pool2d(p, x.data(), y.data()), Error);
}

}  // namespace
}  // namespace vqa::cpu

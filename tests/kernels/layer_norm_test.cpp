// CPU LayerNorm against a double-precision reference: both variants, with and without the fused residual, odd
// row lengths, in place, rows with a large mean (where a one-pass variance would lose digits).
#include "kernels/cpu/layer_norm.h"

#include <cmath>
#include <cstdint>
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

// Statistics in double on both sides; what remains is the float rounding of x + r and of the output (a few
// ulps of values of order 1): rtol 1e-5, atol 1e-6, the test default.
constexpr test::Tolerance kLayerNormTolerance{};

using LayerNormParam = std::tuple<int64_t, int64_t, bool, LayerNormVariant>;  // M, d, residual, variant

std::string layer_norm_case_name(const testing::TestParamInfo<LayerNormParam>& info) {
    const auto& [M, d, residual, variant] = info.param;
    return "M" + std::to_string(M) + "_d" + std::to_string(d) + (residual ? "_residual" : "") +
           (variant == LayerNormVariant::kStandard ? "_standard" : "_unbiased_std");
}

std::vector<float> reference_layer_norm(const std::vector<float>& x,
                                        const std::vector<float>* r,
                                        const std::vector<float>& w,
                                        const std::vector<float>& b,
                                        int64_t M,
                                        int64_t d,
                                        double eps,
                                        LayerNormVariant variant) {
    std::vector<float> y(M * d);
    for (int64_t i = 0; i < M; ++i) {
        std::vector<double> s(d);
        double mean = 0.0;
        for (int64_t j = 0; j < d; ++j) {
            s[j] = r != nullptr ? static_cast<float>(x[i * d + j] + (*r)[i * d + j])
                                : x[i * d + j];  // as torch: x + r in fp32
            mean += s[j] / d;
        }
        double sq = 0.0;
        for (int64_t j = 0; j < d; ++j) {
            sq += (s[j] - mean) * (s[j] - mean);
        }
        for (int64_t j = 0; j < d; ++j) {
            const double n = variant == LayerNormVariant::kStandard ? (s[j] - mean) / std::sqrt(sq / d + eps)
                                                                    : (s[j] - mean) / (std::sqrt(sq / (d - 1)) + eps);
            y[i * d + j] = static_cast<float>(n * w[j] + b[j]);
        }
    }
    return y;
}

class LayerNormTest : public testing::TestWithParam<LayerNormParam> {};

TEST_P(LayerNormTest, MatchesReference) {
    const auto& [M, d, with_residual, variant] = GetParam();
    const float eps = 1e-5f;
    // an offset of 100 in x: a naive E[x²] − E[x]² variance would lose about 4 of float's 7 digits
    const std::vector<float> x = random_vector(M * d, 1, 99.0f, 101.0f);
    const std::vector<float> r = random_vector(M * d, 2);
    const std::vector<float> w = random_vector(d, 3, 0.5f, 1.5f);
    const std::vector<float> b = random_vector(d, 4);
    std::vector<float> y(M * d);
    test::poison_nan(y);
    layer_norm(x.data(), with_residual ? r.data() : nullptr, w.data(), b.data(), y.data(), M, d, eps, variant);
    const std::vector<float> expected = reference_layer_norm(x, with_residual ? &r : nullptr, w, b, M, d, eps, variant);
    EXPECT_TRUE(all_close(y, expected, kLayerNormTolerance, {M, d}));

    std::vector<float> in_place = x;  // the post-norm update x = LN(x + r) in place
    layer_norm(in_place.data(), with_residual ? r.data() : nullptr, w.data(), b.data(), in_place.data(), M, d, eps,
               variant);
    EXPECT_TRUE(all_close(in_place, y, test::kExact));
    if (with_residual) {
        std::vector<float> into_residual = r;  // y may alias the residual too
        layer_norm(x.data(), into_residual.data(), w.data(), b.data(), into_residual.data(), M, d, eps, variant);
        EXPECT_TRUE(all_close(into_residual, y, test::kExact));
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes,
                         LayerNormTest,
                         testing::Combine(testing::Values(1, 7, 100),
                                          testing::Values(2, 3, 31, 32, 33, 1024),
                                          testing::Bool(),
                                          testing::Values(LayerNormVariant::kStandard, LayerNormVariant::kUnbiasedStd)),
                         layer_norm_case_name);

TEST(LayerNormReference, ConstantRowGivesBias) {
    // zero variance: the standard variant divides by sqrt(eps), the unbiased_std one by eps; both give b
    const std::vector<float> x(5, 3.0f);
    const std::vector<float> w = random_vector(5, 5);
    const std::vector<float> b = random_vector(5, 6);
    for (const auto variant : {LayerNormVariant::kStandard, LayerNormVariant::kUnbiasedStd}) {
        std::vector<float> y(5);
        test::poison_nan(y);
        layer_norm(x.data(), nullptr, w.data(), b.data(), y.data(), 1, 5, 1e-5f, variant);
        EXPECT_TRUE(all_close(y, b, test::kExact));
    }
}

TEST(LayerNormReference, UnbiasedStdNeedsTwoElements) {
    std::vector<float> x(1, 1.0f);
    EXPECT_THROW(
        layer_norm(x.data(), nullptr, x.data(), x.data(), x.data(), 1, 1, 1e-5f, LayerNormVariant::kUnbiasedStd),
        Error);
}

}  // namespace
}  // namespace vqa::cpu

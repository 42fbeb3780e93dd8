// CPU bias + activation, ReLU and residual add against element-wise references at odd sizes.
#include "kernels/cpu/bias_act.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "tests/kernels/test_util.h"

namespace vqa::cpu {
namespace {

using test::all_close;
using test::random_vector;

// One float operation per element, compared with the same operation in double (tanh: the libm result rounds
// within an ulp): rtol 1e-6, atol 1e-7.
constexpr test::Tolerance kElementwiseTolerance{1e-12, 1e-7, 1e-6};

using BiasActParam = std::tuple<int64_t, int64_t, bool, Activation>;  // rows, cols, bias, activation

std::string bias_act_case_name(const testing::TestParamInfo<BiasActParam>& info) {
    const auto& [rows, cols, bias, act] = info.param;
    const char* act_name = act == Activation::kRelu ? "relu" : act == Activation::kTanh ? "tanh" : "none";
    return "rows" + std::to_string(rows) + "_cols" + std::to_string(cols) + (bias ? "_bias_" : "_") + act_name;
}

class BiasActTest : public testing::TestWithParam<BiasActParam> {};

TEST_P(BiasActTest, MatchesReference) {
    const auto& [rows, cols, with_bias, act] = GetParam();
    const std::vector<float> x = random_vector(rows * cols, 1, -3.0f, 3.0f);
    const std::vector<float> b = random_vector(cols, 2);
    std::vector<float> y(rows * cols);
    test::poison_nan(y);
    bias_act(x.data(), with_bias ? b.data() : nullptr, y.data(), rows, cols, act);

    std::vector<float> expected(rows * cols);
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
            const double v = static_cast<double>(x[r * cols + c]) + (with_bias ? b[c] : 0.0f);
            const double a = act == Activation::kRelu ? std::max(v, 0.0) : act == Activation::kTanh ? std::tanh(v) : v;
            expected[r * cols + c] = static_cast<float>(a);
        }
    }
    EXPECT_TRUE(all_close(y, expected, kElementwiseTolerance, {rows, cols}));

    std::vector<float> in_place = x;  // y may alias x
    bias_act(in_place.data(), with_bias ? b.data() : nullptr, in_place.data(), rows, cols, act);
    EXPECT_TRUE(all_close(in_place, y, test::kExact));
}

INSTANTIATE_TEST_SUITE_P(Shapes,
                         BiasActTest,
                         testing::Combine(testing::Values(1, 7, 100),
                                          testing::Values(1, 31, 33, 1025),
                                          testing::Bool(),
                                          testing::Values(Activation::kNone, Activation::kRelu, Activation::kTanh)),
                         bias_act_case_name);

TEST(ReluInplace, ClampsNegativesKeepsNaN) {
    for (const int64_t n : {1, 2, 33, 100000}) {
        SCOPED_TRACE("n " + std::to_string(n));
        std::vector<float> x = random_vector(n, 3);
        std::vector<float> expected(n);
        for (int64_t i = 0; i < n; ++i) {
            expected[i] = x[i] < 0.0f ? 0.0f : x[i];
        }
        relu_inplace(x.data(), n);
        EXPECT_TRUE(all_close(x, expected, test::kExact));
    }
    std::vector<float> nan = {std::numeric_limits<float>::quiet_NaN()};
    relu_inplace(nan.data(), 1);
    EXPECT_TRUE(std::isnan(nan[0])) << "relu(NaN) must stay NaN, as torch.relu";
}

TEST(AddInplace, AddsElementwise) {
    for (const int64_t n : {1, 2, 33, 100000}) {
        SCOPED_TRACE("n " + std::to_string(n));
        std::vector<float> y = random_vector(n, 4);
        const std::vector<float> x = random_vector(n, 5);
        std::vector<float> expected(n);
        for (int64_t i = 0; i < n; ++i) {
            expected[i] = y[i] + x[i];
        }
        add_inplace(y.data(), x.data(), n);
        EXPECT_TRUE(all_close(y, expected, test::kExact));
    }
}

}  // namespace
}  // namespace vqa::cpu

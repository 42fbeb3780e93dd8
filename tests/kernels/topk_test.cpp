// CPU answer scoring: top-k against a stable sort (ties by lower id, NaN last), softmax_rows and sigmoid against
// double-precision references.
#include "kernels/cpu/topk.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
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

using TopkParam = std::tuple<int64_t, int64_t, int64_t>;  // B, A, k

std::string topk_case_name(const testing::TestParamInfo<TopkParam>& info) {
    const auto& [B, A, k] = info.param;
    return "B" + std::to_string(B) + "_A" + std::to_string(A) + "_k" + std::to_string(k);
}

class TopkTest : public testing::TestWithParam<TopkParam> {};

TEST_P(TopkTest, MatchesStableSort) {
    const auto& [B, A, k_param] = GetParam();
    const int64_t k = std::min(k_param, A);
    std::vector<float> scores = random_vector(B * A, 1);
    for (int64_t i = 0; i < B * A; i += 3) {
        scores[i] = std::round(scores[i] * 4.0f) / 4.0f;  // many exact ties
    }
    std::vector<int32_t> ids(B * k, -1);
    std::vector<float> values(B * k);
    test::poison_nan(values);
    topk(scores.data(), B, A, k, ids.data(), values.data());

    for (int64_t b = 0; b < B; ++b) {
        std::vector<int32_t> order(A);
        std::iota(order.begin(), order.end(), 0);
        const float* row = scores.data() + b * A;
        std::stable_sort(order.begin(), order.end(), [&](int32_t x, int32_t y) { return row[x] > row[y]; });
        for (int64_t i = 0; i < k; ++i) {
            EXPECT_EQ(ids[b * k + i], order[i]) << "row " << b << " rank " << i;
            EXPECT_EQ(values[b * k + i], row[order[i]]) << "row " << b << " rank " << i;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes,
                         TopkTest,
                         testing::Combine(testing::Values(1, 3),
                                          testing::Values(1, 2, 7, 33, 3129),
                                          testing::Values(1, 5, 3129)),
                         topk_case_name);

TEST(TopkReference, TiesByLowerIdAndNanLast) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const std::vector<float> scores = {0.5f, nan, 0.5f, -std::numeric_limits<float>::infinity(), 0.7f, nan};
    std::vector<int32_t> ids(6);
    std::vector<float> values(6);
    topk(scores.data(), 1, 6, 6, ids.data(), values.data());
    EXPECT_EQ(ids, (std::vector<int32_t>{4, 0, 2, 3, 1, 5}));
}

TEST(TopkReference, RejectsKOutsideOneToA) {
    const std::vector<float> scores(4, 1.0f);
    std::vector<int32_t> ids(8);
    std::vector<float> values(8);
    EXPECT_THROW(topk(scores.data(), 1, 4, 0, ids.data(), values.data()), Error);
    EXPECT_THROW(topk(scores.data(), 1, 4, 5, ids.data(), values.data()), Error);
}

TEST(SoftmaxRows, MatchesReference) {
    for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {3, 7}, {2, 3129}, {100, 33}}) {
        SCOPED_TRACE("rows " + std::to_string(rows) + " cols " + std::to_string(cols));
        const std::vector<float> x = random_vector(rows * cols, 2, -10.0f, 10.0f);
        std::vector<float> y(x.size());
        test::poison_nan(y);
        softmax_rows(x.data(), y.data(), rows, cols);
        std::vector<float> expected(x.size());
        for (int64_t r = 0; r < rows; ++r) {
            const double m = *std::max_element(x.begin() + r * cols, x.begin() + (r + 1) * cols);
            double sum = 0.0;
            for (int64_t c = 0; c < cols; ++c) {
                sum += std::exp(x[r * cols + c] - m);
            }
            for (int64_t c = 0; c < cols; ++c) {
                expected[r * cols + c] = static_cast<float>(std::exp(x[r * cols + c] - m) / sum);
            }
        }
        // float exp and sum over up to 3129 terms: rtol 1e-5; atol 1e-7 (probabilities are small)
        EXPECT_TRUE(all_close(y, expected, {1e-10, 1e-7, 1e-5}, {rows, cols}));
    }
}

TEST(Sigmoid, MatchesReference) {
    const int64_t n = 100001;
    const std::vector<float> x = random_vector(n, 3, -20.0f, 20.0f);
    std::vector<float> y(n);
    test::poison_nan(y);
    sigmoid(x.data(), y.data(), n);
    std::vector<float> expected(n);
    for (int64_t i = 0; i < n; ++i) {
        expected[i] = static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(x[i]))));
    }
    // one float exp and a division: a few ulps (rtol 1e-6); atol 1e-9 for the values near 0 at x ≈ −20
    EXPECT_TRUE(all_close(y, expected, {1e-12, 1e-9, 1e-6}));
}

}  // namespace
}  // namespace vqa::cpu

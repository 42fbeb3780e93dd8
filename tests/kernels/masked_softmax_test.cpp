// CPU masked softmax against a double-precision reference: odd row lengths, shared mask rows, scaling, partly
// and fully masked rows under both fully-masked-row rules, and the strided one-row entry.
#include "kernels/cpu/masked_softmax.h"

#include <algorithm>
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

// Float exp and sum against double: a few ulps per probability (default test tolerance: rtol 1e-5, atol 1e-6).
constexpr test::Tolerance kSoftmaxTolerance{};

enum class MaskKind { kNone, kPartial, kWithFullyMasked };

// Random valid/masked keys (about 1 in 3 masked) from a fixed seed; with kWithFullyMasked, mask row 1 is all
// masked and row 0 all valid.
std::vector<uint8_t> make_mask(int64_t mask_rows, int64_t cols, MaskKind kind, uint64_t seed) {
    std::vector<uint8_t> mask(mask_rows * cols, 1);
    const std::vector<float> u = random_vector(mask.size(), seed, 0.0f, 1.0f);
    for (size_t i = 0; i < mask.size(); ++i) {
        mask[i] = u[i] < 0.33f ? 0 : 1;
    }
    if (kind == MaskKind::kWithFullyMasked) {
        std::fill(mask.begin(), mask.begin() + cols, uint8_t{1});
        if (mask_rows > 1) {
            std::fill(mask.begin() + cols, mask.begin() + 2 * cols, uint8_t{0});
        }
    }
    return mask;
}

// Softmax of scale · s over the valid keys, in double; an all-masked row follows the rule.
std::vector<double> reference_softmax_row(
    const float* s, const uint8_t* mask, int64_t n, double scale, MaskedRow rule) {
    std::vector<double> p(n, 0.0);
    double row_max = -INFINITY;
    for (int64_t j = 0; j < n; ++j) {
        if (mask == nullptr || mask[j]) {
            row_max = std::max(row_max, scale * s[j]);
        }
    }
    if (row_max == -INFINITY) {
        std::fill(p.begin(), p.end(), rule == MaskedRow::kUniform ? 1.0 / n : 0.0);
        return p;
    }
    double sum = 0.0;
    for (int64_t j = 0; j < n; ++j) {
        if (mask == nullptr || mask[j]) {
            p[j] = std::exp(scale * s[j] - row_max);
            sum += p[j];
        }
    }
    for (double& v : p) {
        v /= sum;
    }
    return p;
}

using SoftmaxParam = std::tuple<int64_t, int64_t, MaskKind, MaskedRow>;  // cols, rows_per_mask, mask, rule

std::string softmax_case_name(const testing::TestParamInfo<SoftmaxParam>& info) {
    const auto& [cols, rows_per_mask, mask, rule] = info.param;
    const char* mask_name = mask == MaskKind::kNone ? "nomask" : mask == MaskKind::kPartial ? "partial" : "fullrows";
    return "Lk" + std::to_string(cols) + "_rpm" + std::to_string(rows_per_mask) + "_" + mask_name +
           (rule == MaskedRow::kZero ? "_zero" : "_uniform");
}

class MaskedSoftmaxTest : public testing::TestWithParam<SoftmaxParam> {};

TEST_P(MaskedSoftmaxTest, MatchesReference) {
    const auto& [cols, rows_per_mask, mask_kind, rule] = GetParam();
    const int64_t mask_rows = 4;
    const int64_t rows = mask_rows * rows_per_mask;
    MaskedSoftmaxParams params;
    params.rows = rows;
    params.cols = cols;
    params.rows_per_mask = rows_per_mask;
    params.scale = 0.37f;
    params.masked_row = rule;
    const std::vector<float> scores = random_vector(rows * cols, 1, -8.0f, 8.0f);
    const std::vector<uint8_t> mask = make_mask(mask_rows, cols, mask_kind, 2);
    const uint8_t* mask_ptr = mask_kind == MaskKind::kNone ? nullptr : mask.data();
    std::vector<float> probs(rows * cols);
    test::poison_nan(probs);
    masked_softmax(params, scores.data(), mask_ptr, probs.data());

    std::vector<float> expected(rows * cols);
    for (int64_t r = 0; r < rows; ++r) {
        const uint8_t* mask_row = mask_ptr != nullptr ? mask_ptr + (r / rows_per_mask) * cols : nullptr;
        const std::vector<double> p = reference_softmax_row(&scores[r * cols], mask_row, cols, params.scale, rule);
        const bool any_valid = mask_row == nullptr || std::find(mask_row, mask_row + cols, 1) != mask_row + cols;
        double sum = 0.0;
        for (int64_t j = 0; j < cols; ++j) {
            expected[r * cols + j] = static_cast<float>(p[j]);
            sum += probs[r * cols + j];
            const bool masked = mask_row != nullptr && mask_row[j] == 0;
            if (masked && (any_valid || rule == MaskedRow::kZero)) {
                EXPECT_EQ(probs[r * cols + j], 0.0f) << "a masked key must get exactly 0: row " << r << " key " << j;
            }
        }
        EXPECT_NEAR(sum, any_valid || rule == MaskedRow::kUniform ? 1.0 : 0.0, 1e-5) << "row " << r;
        if (!any_valid && rule == MaskedRow::kUniform) {
            EXPECT_EQ(probs[r * cols], 1.0f / static_cast<float>(cols)) << "uniform row " << r;
        }
    }
    EXPECT_TRUE(all_close(probs, expected, kSoftmaxTolerance, {rows, cols}));

    std::vector<float> in_place = scores;  // probs may alias scores
    masked_softmax(params, in_place.data(), mask_ptr, in_place.data());
    EXPECT_TRUE(all_close(in_place, probs, test::kExact));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes,
    MaskedSoftmaxTest,
    testing::Combine(testing::Values(1, 2, 7, 31, 32, 33, 100, 1025),
                     testing::Values(1, 3),
                     testing::Values(MaskKind::kNone, MaskKind::kPartial, MaskKind::kWithFullyMasked),
                     testing::Values(MaskedRow::kZero, MaskedRow::kUniform)),
    softmax_case_name);

TEST(MaskedSoftmaxRow, StridedColumnOfMatrix) {
    // column 1 of a [7, 3] matrix is one row of 7 elements, 3 apart; the other columns are left alone
    const std::vector<float> m = random_vector(7 * 3, 3, -4.0f, 4.0f);
    const std::vector<uint8_t> mask = {1, 0, 1, 1, 0, 1, 1};
    std::vector<float> out = m;
    masked_softmax_row(out.data() + 1, mask.data(), out.data() + 1, 7, 3, 1.0f, MaskedRow::kZero);
    std::vector<float> column(7);
    for (int j = 0; j < 7; ++j) {
        column[j] = m[j * 3 + 1];
    }
    const std::vector<double> p = reference_softmax_row(column.data(), mask.data(), 7, 1.0, MaskedRow::kZero);
    std::vector<float> expected = m;
    for (int j = 0; j < 7; ++j) {
        expected[j * 3 + 1] = static_cast<float>(p[j]);
    }
    EXPECT_TRUE(all_close(out, expected, kSoftmaxTolerance, {7, 3}));
}

TEST(MaskedSoftmax, LargeScoresDoNotOverflow) {
    // exp(1000) overflows float: the row max must be subtracted first
    const std::vector<float> scores = {1000.0f, 999.0f, -1000.0f};
    std::vector<float> probs(3);
    MaskedSoftmaxParams params;
    params.rows = 1;
    params.cols = 3;
    masked_softmax(params, scores.data(), nullptr, probs.data());
    const double e = std::exp(-1.0);
    EXPECT_TRUE(all_close(probs, {static_cast<float>(1.0 / (1.0 + e)), static_cast<float>(e / (1.0 + e)), 0.0f},
                          kSoftmaxTolerance));
}

TEST(MaskedSoftmax, RejectsRowsNotMultipleOfMaskGroup) {
    std::vector<float> scores(10, 1.0f);
    MaskedSoftmaxParams params;
    params.rows = 5;
    params.cols = 2;
    params.rows_per_mask = 2;
    EXPECT_THROW(masked_softmax(params, scores.data(), nullptr, scores.data()), Error);
}

}  // namespace
}  // namespace vqa::cpu

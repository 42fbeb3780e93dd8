// CPU reference of the CUDA masked softmax (cpu::scaled_masked_softmax): without an additive mask it is
// cpu::masked_softmax; an additive mask is added after the scale; additive -inf keys count as masked, so an all
// -inf row follows the fully masked row rule; in place; argument checks.
#include "kernels/cpu/scaled_masked_softmax.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/masked_softmax.h"
#include "tests/kernels/gpu_case.h"
#include "tests/kernels/test_util.h"
#include "vqa/error.h"

namespace vqa::cpu {
namespace {

using test::all_close;
using test::random_vector;

SoftmaxParams params(int64_t rows, int64_t cols, int64_t rows_per_mask, MaskedRow rule) {
    SoftmaxParams p;
    p.rows = rows;
    p.cols = cols;
    p.rows_per_mask = rows_per_mask;
    p.scale = 0.3f;
    p.masked_row = rule;
    return p;
}

TEST(ScaledMaskedSoftmaxTest, WithoutAdditiveMaskIsMaskedSoftmax) {
    for (const MaskedRow rule : {MaskedRow::kZero, MaskedRow::kUniform}) {
        for (const int64_t cols : {1, 13, 100}) {
            const SoftmaxParams p = params(2 * 3 * 7, cols, 3 * 7, rule);
            const std::vector<float> scores = random_vector(p.rows * cols, 1, -5.0f, 5.0f);
            const std::vector<uint8_t> mask = test::make_key_mask(2, cols, test::MaskKind::kWithFullyMasked, 2);
            std::vector<float> expected(scores.size());
            std::vector<float> found(scores.size());
            masked_softmax({p.rows, p.cols, p.rows_per_mask, p.scale, rule}, scores.data(), mask.data(),
                           expected.data());
            scaled_masked_softmax(p, scores.data(), mask.data(), nullptr, found.data());
            EXPECT_TRUE(all_close(found, expected, test::kExact)) << "cols " << cols;
        }
    }
}

TEST(ScaledMaskedSoftmaxTest, AdditiveMaskIsAddedAfterTheScale) {
    const int64_t q_len = 5;
    const int64_t cols = 9;
    SoftmaxParams p = params(2 * q_len, cols, q_len, MaskedRow::kZero);
    p.additive_rows = q_len;  // [Lq, Lk], shared by both batches
    const std::vector<float> scores = random_vector(p.rows * cols, 3, -5.0f, 5.0f);
    const std::vector<float> additive = random_vector(q_len * cols, 4, -2.0f, 2.0f);
    std::vector<float> pre_added(scores.size());
    for (int64_t r = 0; r < p.rows; ++r) {
        for (int64_t j = 0; j < cols; ++j) {
            pre_added[r * cols + j] = p.scale * scores[r * cols + j] + additive[(r % q_len) * cols + j];
        }
    }
    std::vector<float> expected(scores.size());
    std::vector<float> found(scores.size());
    masked_softmax({p.rows, cols, p.rows_per_mask, 1.0f, MaskedRow::kZero}, pre_added.data(), nullptr, expected.data());
    scaled_masked_softmax(p, scores.data(), nullptr, additive.data(), found.data());
    EXPECT_TRUE(all_close(found, expected, test::kExact));
}

TEST(ScaledMaskedSoftmaxTest, AdditiveMinusInfinityMasksKeys) {
    const int64_t cols = 4;
    SoftmaxParams p = params(2, cols, 1, MaskedRow::kUniform);
    p.scale = 1.0f;
    p.additive_rows = 2;
    const std::vector<float> scores = {1.0f, 2.0f, 3.0f, 4.0f, 1.0f, 2.0f, 3.0f, 4.0f};
    const std::vector<float> additive = {0.0f, -INFINITY, 0.0f, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    std::vector<float> found(scores.size());
    scaled_masked_softmax(p, scores.data(), nullptr, additive.data(), found.data());
    const float e = std::exp(-2.0f);
    const std::vector<float> expected = {e / (1.0f + e), 0.0f, 1.0f / (1.0f + e), 0.0f, 0.25f, 0.25f, 0.25f, 0.25f};
    EXPECT_TRUE(all_close(found, expected, test::Tolerance{}));

    p.masked_row = MaskedRow::kZero;
    scaled_masked_softmax(p, scores.data(), nullptr, additive.data(), found.data());
    EXPECT_EQ(found[4] + found[5] + found[6] + found[7], 0.0f);
}

TEST(ScaledMaskedSoftmaxTest, RunsInPlace) {
    const SoftmaxParams p = params(6, 33, 3, MaskedRow::kZero);
    const std::vector<float> scores = random_vector(p.rows * p.cols, 5, -5.0f, 5.0f);
    const std::vector<uint8_t> mask = test::make_key_mask(2, p.cols, test::MaskKind::kPartial, 6);
    std::vector<float> expected(scores.size());
    scaled_masked_softmax(p, scores.data(), mask.data(), nullptr, expected.data());
    std::vector<float> in_place = scores;
    scaled_masked_softmax(p, in_place.data(), mask.data(), nullptr, in_place.data());
    EXPECT_TRUE(all_close(in_place, expected, test::kExact));
}

TEST(ScaledMaskedSoftmaxTest, RejectsBadArguments) {
    float data[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    SoftmaxParams p = params(3, 1, 2, MaskedRow::kZero);
    try {
        scaled_masked_softmax(p, data, nullptr, nullptr, data);
        FAIL() << "expected vqa::Error";
    } catch (const Error& error) {
        EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
        EXPECT_NE(std::string(error.what()).find("rows (3) must be a multiple of rows_per_mask (2)"), std::string::npos)
            << error.what();
    }
    p = params(2, 2, 1, MaskedRow::kZero);
    p.additive_rows = 1;
    EXPECT_THROW(scaled_masked_softmax(p, data, nullptr, nullptr, data), Error);  // additive_rows without a pointer
    EXPECT_NO_THROW(scaled_masked_softmax(params(0, 5, 1, MaskedRow::kZero), nullptr, nullptr, nullptr, nullptr));
}

}  // namespace
}  // namespace vqa::cpu

// CPU attention pooling (AttFlat) against a double-precision reference: glimpses 1/2, odd lengths and widths,
// partly and fully masked samples under both fully-masked-row rules.
#include "kernels/cpu/attention_pool.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "tests/engine/engine_test_util.h"
#include "tests/kernels/test_util.h"
#include "vqa/error.h"

namespace vqa::cpu {
namespace {

using test::all_close;
using test::random_vector;

// A float softmax and an L-term float GEMM against double: rtol 1e-5, atol 1e-6 (the test default).
constexpr test::Tolerance kPoolTolerance{};

enum class MaskKind { kNone, kPartial, kWithFullyMasked };

using PoolParam = std::tuple<int64_t, int64_t, int64_t, int64_t, MaskKind, MaskedRow>;  // B, L, d, G, mask, rule

std::string pool_case_name(const testing::TestParamInfo<PoolParam>& info) {
    const auto& [B, L, d, G, mask, rule] = info.param;
    const char* mask_name = mask == MaskKind::kNone ? "nomask" : mask == MaskKind::kPartial ? "partial" : "fullrows";
    return "B" + std::to_string(B) + "_L" + std::to_string(L) + "_d" + std::to_string(d) + "_G" + std::to_string(G) +
           "_" + mask_name + (rule == MaskedRow::kZero ? "_zero" : "_uniform");
}

void check_attention_pool(int64_t B, int64_t L, int64_t d, int64_t G, MaskKind mask_kind, MaskedRow rule) {
    const std::vector<float> x = random_vector(B * L * d, 1);
    const std::vector<float> logits = random_vector(B * L * G, 2, -4.0f, 4.0f);
    std::vector<uint8_t> mask(B * L);
    const std::vector<float> u = random_vector(mask.size(), 3, 0.0f, 1.0f);
    for (int64_t i = 0; i < B * L; ++i) {
        mask[i] = i % L == 0 || u[i] >= 0.3f;  // the first position of every sample stays valid
    }
    if (mask_kind == MaskKind::kWithFullyMasked) {
        std::fill(mask.end() - L, mask.end(), uint8_t{0});  // the last sample has no valid position
    }
    const uint8_t* mask_ptr = mask_kind == MaskKind::kNone ? nullptr : mask.data();
    std::vector<float> weights = logits;
    std::vector<float> z(B * G * d);
    test::poison_nan(z);
    attention_pool(x.data(), weights.data(), mask_ptr, z.data(), B, L, d, G, rule);

    std::vector<float> expected_w(weights.size());
    std::vector<float> expected_z(z.size());
    for (int64_t b = 0; b < B; ++b) {
        const auto valid = [&](int64_t l) { return mask_ptr == nullptr || mask_ptr[b * L + l] != 0; };
        for (int64_t g = 0; g < G; ++g) {
            std::vector<double> p(L, 0.0);
            double row_max = -INFINITY, sum = 0.0;
            for (int64_t l = 0; l < L; ++l) {
                row_max = valid(l) ? std::max(row_max, static_cast<double>(logits[(b * L + l) * G + g])) : row_max;
            }
            for (int64_t l = 0; l < L; ++l) {
                if (row_max == -INFINITY) {
                    p[l] = rule == MaskedRow::kUniform ? 1.0 / L : 0.0;
                } else {
                    p[l] = valid(l) ? std::exp(logits[(b * L + l) * G + g] - row_max) : 0.0;
                    sum += p[l];
                }
            }
            for (int64_t l = 0; l < L; ++l) {
                p[l] = sum > 0.0 ? p[l] / sum : p[l];
                expected_w[(b * L + l) * G + g] = static_cast<float>(p[l]);
            }
            for (int64_t j = 0; j < d; ++j) {
                double acc = 0.0;
                for (int64_t l = 0; l < L; ++l) {
                    acc += p[l] * x[(b * L + l) * d + j];
                }
                expected_z[b * G * d + g * d + j] = static_cast<float>(acc);  // glimpse-major concat
            }
        }
    }
    EXPECT_TRUE(all_close(weights, expected_w, kPoolTolerance, {B, L, G}));
    EXPECT_TRUE(all_close(z, expected_z, kPoolTolerance, {B, G, d}));
    if (mask_kind == MaskKind::kWithFullyMasked && rule == MaskedRow::kZero) {
        EXPECT_TRUE(std::all_of(z.end() - G * d, z.end(), [](float v) { return v == 0.0f; }))
            << "a sample with no valid position pools to exact zeros under kZero";
    }
}

class AttentionPoolTest : public testing::TestWithParam<PoolParam> {};

TEST_P(AttentionPoolTest, MatchesReference) {
    const auto& [B, L, d, G, mask_kind, rule] = GetParam();
    check_attention_pool(B, L, d, G, mask_kind, rule);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes,
    AttentionPoolTest,
    testing::Combine(testing::Values(1, 3),
                     testing::Values(1, 14, 100),
                     testing::Values(1, 33, 64),
                     testing::Values(1, 2),
                     testing::Values(MaskKind::kNone, MaskKind::kPartial, MaskKind::kWithFullyMasked),
                     testing::Values(MaskedRow::kZero, MaskedRow::kUniform)),
    pool_case_name);

// G·d·L above gemm_runs_single_threaded: samples run one after another, each GEMM on OpenBLAS's threads.
TEST(AttentionPoolReference, LargeSamplesOneAtATime) {
    check_attention_pool(3, 196, 1024, 2, MaskKind::kWithFullyMasked, MaskedRow::kZero);
}

// Packed samples against the dense layout: the same samples padded to L, with a mask that hides the padding, must
// give the same weights on the valid rows and the same z. Both run the same float operations on the same values;
// only the BLAS kernel picked for a GEMM of another shape may sum in another order, a few ulps: rtol 1e-6 (atol
// 1e-6 for weights near 0). NaN never passes (all_close).
constexpr test::Tolerance kPackedPoolTolerance{1e-12, 1e-6, 1e-6};

struct PackedPoolCase {
    const char* name;
    int64_t d, G;
    std::vector<int64_t> counts;  // positions of each sample, 1..L
    // A sample whose positions are all masked, or -1. Its count is L: dense padding positions count under
    // kUniform (1/L), packed ones do not exist (1/count), so only a sample kept whole compares under both rules.
    int64_t masked_sample;
};

using PackedPoolParam = std::tuple<PackedPoolCase, bool, MaskedRow>;  // case, with a mask, rule

std::string packed_pool_case_name(const testing::TestParamInfo<PackedPoolParam>& info) {
    const auto& [c, with_mask, rule] = info.param;
    return std::string(c.name) + (with_mask ? "_mask" : "_nomask") + (rule == MaskedRow::kZero ? "_zero" : "_uniform");
}

class PackedAttentionPoolTest : public testing::TestWithParam<PackedPoolParam> {};

TEST_P(PackedAttentionPoolTest, MatchesDenseWithPaddingMask) {
    const auto& [c, with_mask, rule] = GetParam();
    const int64_t B = static_cast<int64_t>(c.counts.size());
    const int64_t L = *std::max_element(c.counts.begin(), c.counts.end());
    std::vector<int32_t> offsets{0};
    for (const int64_t count : c.counts) {
        offsets.push_back(static_cast<int32_t>(offsets.back() + count));
    }
    const int64_t rows = offsets.back();

    // Dense [B, L, ·] with finite garbage in the padding rows (the mask must hide it); packed: the valid rows.
    const std::vector<float> x_dense = random_vector(B * L * c.d, 31);
    const std::vector<float> logits_dense = random_vector(B * L * c.G, 32, -4.0f, 4.0f);
    const std::vector<float> u = random_vector(B * L, 33, 0.0f, 1.0f);
    std::vector<uint8_t> mask_dense(B * L, 0);
    std::vector<float> x_packed(rows * c.d);
    std::vector<float> logits_packed(rows * c.G);
    std::vector<uint8_t> mask_packed(rows);
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t l = 0; l < c.counts[b]; ++l) {
            const int64_t row = offsets[b] + l;
            mask_packed[row] = b == c.masked_sample ? 0 : (l == 0 || u[b * L + l] >= 0.3f);
            mask_dense[b * L + l] = with_mask ? mask_packed[row] : 1;
        }
        std::copy_n(x_dense.begin() + b * L * c.d, c.counts[b] * c.d, x_packed.begin() + offsets[b] * c.d);
        std::copy_n(logits_dense.begin() + b * L * c.G, c.counts[b] * c.G, logits_packed.begin() + offsets[b] * c.G);
    }

    std::vector<float> w_dense = logits_dense;
    std::vector<float> z_dense(B * c.G * c.d);
    attention_pool(x_dense.data(), w_dense.data(), mask_dense.data(), z_dense.data(), B, L, c.d, c.G, rule);
    std::vector<float> w_packed = logits_packed;
    std::vector<float> z_packed(z_dense.size());
    test::poison_nan(z_packed);
    attention_pool(x_packed.data(), w_packed.data(), with_mask ? mask_packed.data() : nullptr, z_packed.data(), B, L,
                   c.d, c.G, rule, offsets.data());

    std::vector<float> w_expected;
    for (int64_t b = 0; b < B; ++b) {
        w_expected.insert(w_expected.end(), w_dense.begin() + b * L * c.G,
                          w_dense.begin() + (b * L + c.counts[b]) * c.G);
    }
    EXPECT_TRUE(all_close(w_packed, w_expected, kPackedPoolTolerance, {rows, c.G})) << "weights";
    EXPECT_TRUE(all_close(z_packed, z_dense, kPackedPoolTolerance, {B, c.G, c.d})) << "z";
    if (with_mask && rule == MaskedRow::kZero && c.masked_sample >= 0) {
        EXPECT_TRUE(std::all_of(z_packed.begin() + c.masked_sample * c.G * c.d,
                                z_packed.begin() + (c.masked_sample + 1) * c.G * c.d,
                                [](float v) { return v == 0.0f; }))
            << "a sample with no valid position pools to exact zeros under kZero";
    }
}

INSTANTIATE_TEST_SUITE_P(
    Packed,
    PackedAttentionPoolTest,
    testing::Combine(testing::Values(
                         // Odd sizes, a one-position sample, a sample at L; sample 3 is fully masked.
                         PackedPoolCase{"d33_G2", 33, 2, {7, 1, 14, 14, 3}, 3},
                         PackedPoolCase{"d1_G1", 1, 1, {1, 2, 1}, -1},
                         // L·G·d above gemm_runs_single_threaded: samples one after another.
                         PackedPoolCase{"d1024_G2_large", 1024, 2, {196, 37, 1, 196}, 0}),
                     testing::Bool(),
                     testing::Values(MaskedRow::kZero, MaskedRow::kUniform)),
    packed_pool_case_name);

TEST(AttentionPoolReference, RejectsBadPackedOffsets) {
    std::vector<float> x(64, 1.0f);
    std::vector<float> weights(16, 0.5f);
    std::vector<float> z(16);
    std::vector<int32_t> offsets{0, 3, 4};
    const auto run = [&] {
        attention_pool(x.data(), weights.data(), nullptr, z.data(), 2, 3, 4, 1, MaskedRow::kZero, offsets.data());
    };
    EXPECT_NO_THROW(run());  // the valid baseline that each change below breaks
    offsets = {1, 3, 4};
    EXPECT_VQA_ERROR(run(), kInvalidArgument, "offsets[0] must be 0, got 1");
    offsets = {0, 3, 3};
    EXPECT_VQA_ERROR(run(), kInvalidArgument, "packed sample 1 has 0 positions");
    offsets = {0, 4, 5};
    EXPECT_VQA_ERROR(run(), kInvalidArgument, "packed sample 0 has 4 positions");
    offsets = {0, 3, 2};
    EXPECT_VQA_ERROR(run(), kInvalidArgument, "packed sample 1 has -1 positions");
}

}  // namespace
}  // namespace vqa::cpu

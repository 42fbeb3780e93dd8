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

#include "tests/kernels/test_util.h"

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

}  // namespace
}  // namespace vqa::cpu

// CUDA attention pooling against the CPU reference (cpu::attention_pool): lengths around the warp size (1, 2,
// 14, 31/32/33, 100, 257), widths that are and are not multiples of the 16-byte vector (1, 31, 64, 512, 1024,
// 2049), 1 to 5 glimpses (5: two accumulator passes), fully masked samples under both rules, no mask, misaligned
// buffers (the element-wise path), fp32/fp16/bf16.
#include <algorithm>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/attention_pool.h"
#include "kernels/cpu/attention_pool.h"
#include "tests/kernels/gpu_case.h"
#include "tests/kernels/test_util.h"

namespace vqa {
namespace {

using test::MaskKind;
using test::Precision;

struct Case {
    int batch = 3;     // B
    int seq_len = 1;   // L
    int dim = 1;       // d
    int glimpses = 2;  // G
    Precision precision = Precision::kFp32;
    MaskKind mask = MaskKind::kWithFullyMasked;
    cpu::MaskedRow rule = cpu::MaskedRow::kZero;
    bool misaligned = false;  // x and z one element off 16-byte alignment
};

// B3_L37_d255_G2_fp16_maskfull_uniform_misaligned
std::string case_string(const Case& c) {
    return "B" + std::to_string(c.batch) + "_L" + std::to_string(c.seq_len) + "_d" + std::to_string(c.dim) + "_G" +
           std::to_string(c.glimpses) + "_" + test::precision_name(c.precision) + test::mask_suffix(c.mask) +
           (c.rule == cpu::MaskedRow::kUniform ? "_uniform" : "") + (c.misaligned ? "_misaligned" : "");
}
void PrintTo(const Case& c, std::ostream* out) {
    *out << case_string(c);
}

constexpr int kLengths[] = {1, 2, 14, 31, 32, 33, 100, 257};
constexpr int kDims[] = {1, 31, 64, 512, 1024, 2049};

std::vector<Case> grid_cases() {
    std::vector<Case> cases;
    for (const int seq_len : kLengths) {
        for (const int dim : kDims) {
            for (const Precision precision : test::kPrecisions) {
                cases.push_back({3, seq_len, dim, 2, precision, MaskKind::kWithFullyMasked});
            }
        }
    }
    return cases;
}

std::vector<Case> variant_cases() {
    std::vector<Case> cases;
    for (const Precision precision : test::kPrecisions) {
        for (const int seq_len : {1, 14, 33, 257}) {
            cases.push_back({3, seq_len, 512, 1, precision, MaskKind::kWithFullyMasked, cpu::MaskedRow::kUniform});
            cases.push_back({3, seq_len, 31, 2, precision, MaskKind::kWithFullyMasked, cpu::MaskedRow::kUniform});
        }
        for (const int glimpses : {1, 3, 4, 5}) {
            cases.push_back({2, 100, 64, glimpses, precision, MaskKind::kPartial});
        }
        cases.push_back({2, 14, 1024, 2, precision, MaskKind::kNone});
        cases.push_back({1, 100, 512, 2, precision, MaskKind::kWithFullyMasked});  // B = 1: its only sample empty
        cases.push_back({64, 100, 512, 2, precision, MaskKind::kPartial});         // many samples
        cases.push_back({2, 2048, 64, 4, precision, MaskKind::kPartial});          // the largest map, L·G = 8192
        for (const int dim : {64, 512}) {
            cases.push_back({3, 33, dim, 2, precision, MaskKind::kWithFullyMasked, cpu::MaskedRow::kZero, true});
            cases.push_back({3, 33, dim, 2, precision, MaskKind::kWithFullyMasked, cpu::MaskedRow::kUniform, true});
        }
    }
    return cases;
}

template <typename T>
void check_attention_pool(const Case& c) {
    AttentionPoolParams p;
    p.batch = c.batch;
    p.seq_len = c.seq_len;
    p.dim = c.dim;
    p.glimpses = c.glimpses;
    p.masked_row = c.rule;
    const size_t x_elems = static_cast<size_t>(p.batch * p.seq_len * p.dim);
    const size_t map_elems = static_cast<size_t>(p.batch * p.seq_len * p.glimpses);
    const size_t z_elems = static_cast<size_t>(p.batch * p.glimpses * p.dim);
    const std::vector<float> x = test::round_to<T>(test::random_vector(x_elems, 51));
    const std::vector<float> logits = test::random_vector(map_elems, 52, -4.0f, 4.0f);  // float in every precision
    const std::vector<uint8_t> mask = test::make_key_mask(c.batch, c.seq_len, c.mask, 53);
    std::vector<float> expected_weights = logits;
    std::vector<float> expected_z(z_elems);
    cpu::attention_pool(x.data(), expected_weights.data(), mask.empty() ? nullptr : mask.data(), expected_z.data(),
                        p.batch, p.seq_len, p.dim, p.glimpses, c.rule);

    const size_t misalign = c.misaligned ? 1 : 0;
    test::CudaStream stream;
    test::DeviceBuffer<T> x_dev(x_elems, misalign);
    test::DeviceBuffer<float> weights_dev(map_elems);
    test::DeviceBuffer<uint8_t> mask_dev(std::max<size_t>(mask.size(), 1));
    test::DeviceBuffer<T> z_dev(z_elems, misalign);
    x_dev.upload(test::from_float<T>(x));
    weights_dev.upload(logits);
    if (!mask.empty()) {
        mask_dev.upload(mask);
    }
    z_dev.poison_nan();
    cuda::attention_pool(p, x_dev.data(), weights_dev.data(), mask.empty() ? nullptr : mask_dev.data(), z_dev.data(),
                         stream.get());
    stream.synchronize();

    // The map is float in every precision and computed in float from the same logits: float exp and a sum in
    // another order, a few ulps.
    const std::vector<float> weights = weights_dev.download();
    EXPECT_TRUE(test::all_close(weights, expected_weights, test::Tolerance{1e-10, 1e-7, 1e-5},
                                {p.batch, p.seq_len, p.glimpses}))
        << "weights";
    // Masked positions, and every position of a fully masked sample, get the rule's value exactly.
    const float fill = c.rule == cpu::MaskedRow::kUniform ? 1.0f / static_cast<float>(c.seq_len) : 0.0f;
    for (int64_t b = 0; b < p.batch && !mask.empty(); ++b) {
        bool any_valid = false;
        for (int64_t l = 0; l < p.seq_len; ++l) {
            any_valid = any_valid || mask[static_cast<size_t>(b * p.seq_len + l)] != 0;
        }
        for (int64_t l = 0; l < p.seq_len; ++l) {
            for (int64_t g = 0; g < p.glimpses; ++g) {
                const size_t i = static_cast<size_t>((b * p.seq_len + l) * p.glimpses + g);
                if (!any_valid) {
                    ASSERT_EQ(weights[i], fill)
                        << "fully masked sample " << b << ", position " << l << ", glimpse " << g;
                } else if (mask[static_cast<size_t>(b * p.seq_len + l)] == 0) {
                    ASSERT_EQ(weights[i], 0.0f) << "masked position " << l << " of sample " << b << ", glimpse " << g;
                }
            }
        }
    }
    // z: fp32, an L-term sum in another order than the BLAS GEMM's (|z| <= 1, L <= 2048: a few 1e-7). fp16/bf16:
    // the same float sums from the same rounded x, then one rounding of z (2^-9 relative in bf16).
    const test::Tolerance z_tol =
        c.precision == Precision::kFp32 ? test::Tolerance{1e-9, 2e-6, 1e-5} : test::Tolerance{1e-4, 1e-3, 1e-2};
    EXPECT_TRUE(test::all_close(test::to_float(z_dev.download()), expected_z, z_tol, {p.batch, p.glimpses, p.dim}))
        << "z";
    EXPECT_TRUE(x_dev.check_guards());
    EXPECT_TRUE(weights_dev.check_guards());
    EXPECT_TRUE(z_dev.check_guards());
}

class AttentionPoolGpuTest : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionPoolGpuTest, MatchesReference) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    test::with_element_type(GetParam().precision,
                            [&](auto element) { check_attention_pool<decltype(element)>(GetParam()); });
}

INSTANTIATE_TEST_SUITE_P(Grid, AttentionPoolGpuTest, ::testing::ValuesIn(grid_cases()), test::case_name<Case>);
INSTANTIATE_TEST_SUITE_P(Variants, AttentionPoolGpuTest, ::testing::ValuesIn(variant_cases()), test::case_name<Case>);

}  // namespace
}  // namespace vqa

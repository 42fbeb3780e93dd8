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

// Packed (variable-length) samples: x [total rows, d], weights [total rows, G], mask [total rows], the offsets
// [B+1] on the device.
struct PackedCase {
    std::vector<int> counts;  // positions of each sample
    int dim = 1;              // d
    int glimpses = 2;         // G
    int masked_sample = -1;   // a sample whose positions are all masked (kUniform: 1/its count), or -1: no mask
    Precision precision = Precision::kFp32;
    cpu::MaskedRow rule = cpu::MaskedRow::kZero;
    bool misaligned = false;  // x and z one element off 16-byte alignment
};

// n5_L33_d31_G2_fp16_maskfull_uniform_misaligned: sample count, largest count, d, G, ...
std::string case_string(const PackedCase& c) {
    return "n" + std::to_string(c.counts.size()) + "_L" +
           std::to_string(*std::max_element(c.counts.begin(), c.counts.end())) + "_d" + std::to_string(c.dim) + "_G" +
           std::to_string(c.glimpses) + "_" + test::precision_name(c.precision) +
           (c.masked_sample >= 0 ? "_maskfull" : "") + (c.rule == cpu::MaskedRow::kUniform ? "_uniform" : "") +
           (c.misaligned ? "_misaligned" : "");
}
void PrintTo(const PackedCase& c, std::ostream* out) {
    *out << case_string(c);
}

std::vector<PackedCase> packed_cases() {
    std::vector<PackedCase> cases;
    for (const Precision precision : test::kPrecisions) {
        for (const cpu::MaskedRow rule : {cpu::MaskedRow::kZero, cpu::MaskedRow::kUniform}) {
            for (const int dim : {1, 31, 64, 512}) {
                // Odd counts, one position, two samples at L; sample 4 (3 positions) fully masked.
                cases.push_back({{7, 1, 33, 33, 3}, dim, 2, 4, precision, rule});
            }
            cases.push_back({{100, 14, 257, 1}, 64, 5, 0, precision, rule});  // G = 5: two accumulator passes
            cases.push_back({{2, 31, 32}, 1024, 1, -1, precision, rule});     // no mask
            cases.push_back({{7, 1, 33, 33, 3}, 64, 2, 4, precision, rule, true});
        }
    }
    return cases;
}

template <typename T>
void check_packed_attention_pool(const PackedCase& c) {
    std::vector<int32_t> offsets{0};
    for (const int count : c.counts) {
        offsets.push_back(offsets.back() + count);
    }
    AttentionPoolParams p;
    p.batch = static_cast<int64_t>(c.counts.size());
    p.seq_len = *std::max_element(c.counts.begin(), c.counts.end());
    p.dim = c.dim;
    p.glimpses = c.glimpses;
    p.masked_row = c.rule;
    const int64_t rows = offsets.back();
    const size_t x_elems = static_cast<size_t>(rows * p.dim);
    const size_t map_elems = static_cast<size_t>(rows * p.glimpses);
    const size_t z_elems = static_cast<size_t>(p.batch * p.glimpses * p.dim);
    const std::vector<float> x = test::round_to<T>(test::random_vector(x_elems, 81));
    const std::vector<float> logits = test::random_vector(map_elems, 82, -4.0f, 4.0f);
    std::vector<uint8_t> mask;
    if (c.masked_sample >= 0) {
        const std::vector<float> u = test::random_vector(static_cast<size_t>(rows), 83, 0.0f, 1.0f);
        mask.resize(static_cast<size_t>(rows));
        for (size_t b = 0; b < c.counts.size(); ++b) {
            for (int l = 0; l < c.counts[b]; ++l) {
                const size_t row = static_cast<size_t>(offsets[b] + l);
                mask[row] = static_cast<int>(b) == c.masked_sample ? 0 : (l == 0 || u[row] >= 0.33f);
            }
        }
    }
    std::vector<float> expected_weights = logits;
    std::vector<float> expected_z(z_elems);
    cpu::attention_pool(x.data(), expected_weights.data(), mask.empty() ? nullptr : mask.data(), expected_z.data(),
                        p.batch, p.seq_len, p.dim, p.glimpses, c.rule, offsets.data());

    const size_t misalign = c.misaligned ? 1 : 0;
    test::CudaStream stream;
    test::DeviceBuffer<T> x_dev(x_elems, misalign);
    test::DeviceBuffer<float> weights_dev(map_elems);
    test::DeviceBuffer<uint8_t> mask_dev(std::max<size_t>(mask.size(), 1));
    test::DeviceBuffer<T> z_dev(z_elems, misalign);
    test::DeviceBuffer<int32_t> offsets_dev(offsets.size());
    x_dev.upload(test::from_float<T>(x));
    weights_dev.upload(logits);
    if (!mask.empty()) {
        mask_dev.upload(mask);
    }
    offsets_dev.upload(offsets);
    z_dev.poison_nan();
    p.offsets = offsets_dev.data();
    cuda::attention_pool(p, x_dev.data(), weights_dev.data(), mask.empty() ? nullptr : mask_dev.data(), z_dev.data(),
                         stream.get());
    stream.synchronize();

    // The tolerances of the dense cases above, for the same reasons.
    const std::vector<float> weights = weights_dev.download();
    EXPECT_TRUE(test::all_close(weights, expected_weights, test::Tolerance{1e-10, 1e-7, 1e-5}, {rows, p.glimpses}))
        << "weights";
    if (c.masked_sample >= 0) {
        // The fully masked sample's rule value, over its own count, exactly.
        const float fill = c.rule == cpu::MaskedRow::kUniform
                               ? 1.0f / static_cast<float>(c.counts[static_cast<size_t>(c.masked_sample)])
                               : 0.0f;
        for (int64_t i = offsets[c.masked_sample] * p.glimpses; i < offsets[c.masked_sample + 1] * p.glimpses; ++i) {
            ASSERT_EQ(weights[static_cast<size_t>(i)], fill) << "fully masked sample, map element " << i;
        }
    }
    const test::Tolerance z_tol =
        c.precision == Precision::kFp32 ? test::Tolerance{1e-9, 2e-6, 1e-5} : test::Tolerance{1e-4, 1e-3, 1e-2};
    EXPECT_TRUE(test::all_close(test::to_float(z_dev.download()), expected_z, z_tol, {p.batch, p.glimpses, p.dim}))
        << "z";
    EXPECT_TRUE(x_dev.check_guards());
    EXPECT_TRUE(weights_dev.check_guards());
    EXPECT_TRUE(z_dev.check_guards());
}

class AttentionPoolPackedGpuTest : public ::testing::TestWithParam<PackedCase> {};

TEST_P(AttentionPoolPackedGpuTest, MatchesReference) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    test::with_element_type(GetParam().precision,
                            [&](auto element) { check_packed_attention_pool<decltype(element)>(GetParam()); });
}

INSTANTIATE_TEST_SUITE_P(Packed,
                         AttentionPoolPackedGpuTest,
                         ::testing::ValuesIn(packed_cases()),
                         test::case_name<PackedCase>);

// Counts the host cannot check: the kernel clamps them to 0..L (attention_pool.h). With L = 32, sample 0 claims 40
// rows: its first 32 are pooled and the map rows 32..39 stay unwritten; sample 1 has none: z = 0 under either rule.
TEST(AttentionPoolPackedGpu, ClampsCountsTheHostCannotCheck) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    constexpr int kL = 32, kDim = 64, kGlimpses = 2, kRows = 45;
    const std::vector<int32_t> offsets{0, 40, 40, 45};
    const std::vector<float> x = test::random_vector(kRows * kDim, 91);
    const std::vector<float> logits = test::random_vector(kRows * kGlimpses, 92, -4.0f, 4.0f);
    for (const cpu::MaskedRow rule : {cpu::MaskedRow::kZero, cpu::MaskedRow::kUniform}) {
        // Reference: samples 0 and 2 with their clamped counts, packed as rows 0..31 and 40..44.
        const std::vector<int32_t> clamped{0, 32, 37};
        std::vector<float> ref_x(x.begin(), x.begin() + kL * kDim);
        ref_x.insert(ref_x.end(), x.begin() + 40 * kDim, x.end());
        std::vector<float> ref_weights(logits.begin(), logits.begin() + kL * kGlimpses);
        ref_weights.insert(ref_weights.end(), logits.begin() + 40 * kGlimpses, logits.end());
        std::vector<float> ref_z(2 * kGlimpses * kDim);
        cpu::attention_pool(ref_x.data(), ref_weights.data(), nullptr, ref_z.data(), 2, kL, kDim, kGlimpses, rule,
                            clamped.data());

        AttentionPoolParams p;
        p.batch = 3;
        p.seq_len = kL;
        p.dim = kDim;
        p.glimpses = kGlimpses;
        p.masked_row = rule;
        test::CudaStream stream;
        test::DeviceBuffer<float> x_dev(x.size());
        test::DeviceBuffer<float> weights_dev(logits.size());
        test::DeviceBuffer<float> z_dev(size_t{3} * kGlimpses * kDim);
        test::DeviceBuffer<int32_t> offsets_dev(offsets.size());
        x_dev.upload(x);
        weights_dev.upload(logits);
        offsets_dev.upload(offsets);
        z_dev.poison_nan();
        p.offsets = offsets_dev.data();
        cuda::attention_pool(p, x_dev.data(), weights_dev.data(), nullptr, z_dev.data(), stream.get());
        stream.synchronize();

        const std::vector<float> weights = weights_dev.download();
        const std::vector<float> z = z_dev.download();
        const test::Tolerance tol{1e-9, 2e-6, 1e-5};
        EXPECT_TRUE(test::all_close({weights.begin(), weights.begin() + kL * kGlimpses},
                                    {ref_weights.begin(), ref_weights.begin() + kL * kGlimpses}, tol))
            << "sample 0's first L rows";
        EXPECT_TRUE(std::equal(weights.begin() + kL * kGlimpses, weights.begin() + 40 * kGlimpses,
                               logits.begin() + kL * kGlimpses))
            << "map rows past L must stay unwritten";
        EXPECT_TRUE(test::all_close({weights.begin() + 40 * kGlimpses, weights.end()},
                                    {ref_weights.begin() + kL * kGlimpses, ref_weights.end()}, tol))
            << "sample 2";
        EXPECT_TRUE(test::all_close({z.begin(), z.begin() + kGlimpses * kDim},
                                    {ref_z.begin(), ref_z.begin() + kGlimpses * kDim}, tol))
            << "z of sample 0";
        EXPECT_TRUE(std::all_of(z.begin() + kGlimpses * kDim, z.begin() + 2 * kGlimpses * kDim, [](float v) {
            return v == 0.0f;
        })) << "a sample without rows pools to zeros";
        EXPECT_TRUE(test::all_close({z.begin() + 2 * kGlimpses * kDim, z.end()},
                                    {ref_z.begin() + kGlimpses * kDim, ref_z.end()}, tol))
            << "z of sample 2";
        EXPECT_TRUE(weights_dev.check_guards());
        EXPECT_TRUE(z_dev.check_guards());
    }
}

}  // namespace
}  // namespace vqa

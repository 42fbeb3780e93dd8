// CUDA masked softmax against the CPU reference (cpu::scaled_masked_softmax): row lengths around the warp-per-row
// limits (31/32/33, 1023/1024/1025) and past them (block per row), key masks with fully masked rows, additive
// masks with -inf keys, both fully masked row rules, in place, fp32/fp16/bf16.
#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/scaled_masked_softmax.h"
#include "kernels/masked_softmax.h"
#include "tests/kernels/gpu_case.h"
#include "tests/kernels/test_util.h"

namespace vqa {
namespace {

using test::MaskKind;
using test::Precision;

struct Case {
    int batch = 1;   // B: key mask rows
    int heads = 1;   // H
    int q_len = 1;   // Lq: rows = B·H·Lq, rows_per_mask = H·Lq
    int kv_len = 1;  // Lk: row length
    Precision precision = Precision::kFp32;
    MaskKind mask = MaskKind::kNone;
    bool additive = false;  // additive mask [Lq, Lk] shared by every (b, h), with -inf keys and one all -inf row
    cpu::MaskedRow rule = cpu::MaskedRow::kZero;
    bool in_place = false;

    SoftmaxParams params() const {
        SoftmaxParams p;
        p.rows = int64_t{batch} * heads * q_len;
        p.cols = kv_len;
        p.rows_per_mask = int64_t{heads} * q_len;
        p.additive_rows = additive ? q_len : 0;
        p.rows_per_additive = 1;
        p.scale = 0.125f;
        p.masked_row = rule;
        return p;
    }
};

// B2_H8_Lq14_Lk100_fp16_maskfull_add_uniform_inplace
std::string case_string(const Case& c) {
    return "B" + std::to_string(c.batch) + "_H" + std::to_string(c.heads) + "_Lq" + std::to_string(c.q_len) + "_Lk" +
           std::to_string(c.kv_len) + "_" + test::precision_name(c.precision) + test::mask_suffix(c.mask) +
           (c.additive ? "_add" : "") + (c.rule == cpu::MaskedRow::kUniform ? "_uniform" : "") +
           (c.in_place ? "_inplace" : "");
}
void PrintTo(const Case& c, std::ostream* out) {
    *out << case_string(c);
}

std::vector<Case> grid_cases() {
    std::vector<Case> cases;
    for (const int kv_len : {1, 2, 13, 14, 31, 32, 33, 100, 257, 1023, 1024, 1025, 3000}) {
        for (const Precision precision : test::kPrecisions) {
            cases.push_back({2, 8, 14, kv_len, precision, MaskKind::kWithFullyMasked});
            cases.push_back({2, 8, 14, kv_len, precision, MaskKind::kNone});
        }
    }
    return cases;
}

std::vector<Case> rule_cases() {
    std::vector<Case> cases;
    for (const int kv_len : {14, 100, 1025}) {
        for (const Precision precision : test::kPrecisions) {
            cases.push_back({2, 8, 14, kv_len, precision, MaskKind::kWithFullyMasked, false, cpu::MaskedRow::kUniform});
            cases.push_back({2, 8, 14, kv_len, precision, MaskKind::kPartial, true, cpu::MaskedRow::kZero});
            cases.push_back({2, 8, 14, kv_len, precision, MaskKind::kNone, true, cpu::MaskedRow::kUniform});
            cases.push_back(
                {3, 1, 13, kv_len, precision, MaskKind::kWithFullyMasked, true, cpu::MaskedRow::kZero, true});
        }
    }
    for (const Precision precision : test::kPrecisions) {
        cases.push_back({1, 16, 1, 33, precision, MaskKind::kWithFullyMasked});  // B = 1: its only mask row is empty
        cases.push_back({64, 8, 100, 100, precision, MaskKind::kPartial});       // many rows
        cases.push_back({256, 8, 14, 14, precision, MaskKind::kWithFullyMasked, true});
    }
    return cases;
}

// Additive mask [Lq, Lk]: values in [-4, 4), about one key in five -inf, and row 0 all -inf (the rule applies).
std::vector<float> make_additive(int q_len, int kv_len) {
    std::vector<float> add = test::random_vector(static_cast<size_t>(q_len) * kv_len, 31, -4.0f, 4.0f);
    const std::vector<float> u = test::random_vector(add.size(), 32, 0.0f, 1.0f);
    for (size_t i = 0; i < add.size(); ++i) {
        if (u[i] < 0.2f || i < static_cast<size_t>(kv_len)) {
            add[i] = -INFINITY;
        }
    }
    return add;
}

template <typename T>
void check_masked_softmax(const Case& c) {
    const SoftmaxParams p = c.params();
    const size_t n = static_cast<size_t>(p.rows * p.cols);
    const std::vector<float> scores = test::round_to<T>(test::random_vector(n, 21, -8.0f, 8.0f));
    const std::vector<uint8_t> mask = test::make_key_mask(c.batch, c.kv_len, c.mask, 22);
    const std::vector<float> additive = c.additive ? make_additive(c.q_len, c.kv_len) : std::vector<float>{};
    const uint8_t* mask_host = mask.empty() ? nullptr : mask.data();
    const float* additive_host = additive.empty() ? nullptr : additive.data();
    std::vector<float> expected(n);
    cpu::scaled_masked_softmax(p, scores.data(), mask_host, additive_host, expected.data());

    test::CudaStream stream;
    test::DeviceBuffer<T> scores_dev(n);
    test::DeviceBuffer<T> probs_dev(n);
    test::DeviceBuffer<uint8_t> mask_dev(std::max<size_t>(mask.size(), 1));
    test::DeviceBuffer<float> additive_dev(std::max<size_t>(additive.size(), 1));
    scores_dev.upload(test::from_float<T>(scores));
    probs_dev.poison_nan();
    if (!mask.empty()) {
        mask_dev.upload(mask);
    }
    if (!additive.empty()) {
        additive_dev.upload(additive);
    }
    T* out = c.in_place ? scores_dev.data() : probs_dev.data();
    cuda::masked_softmax(p, scores_dev.data(), mask.empty() ? nullptr : mask_dev.data(),
                         additive.empty() ? nullptr : additive_dev.data(), out, stream.get());
    stream.synchronize();

    // fp32: float exp and sums in another order, a few ulps. fp16/bf16: the output is rounded to the element type
    // (at most 2^-9 relative for bf16), the statistics are float on both sides.
    const test::Tolerance tol =
        c.precision == Precision::kFp32 ? test::Tolerance{1e-9, 1e-6, 1e-5} : test::Tolerance{1e-4, 1e-3, 1e-2};
    const std::vector<T> found = c.in_place ? scores_dev.download() : probs_dev.download();
    EXPECT_TRUE(test::all_close(test::to_float(found), expected, tol, {p.rows, p.cols}));
    EXPECT_TRUE(scores_dev.check_guards());
    EXPECT_TRUE(probs_dev.check_guards());
}

class MaskedSoftmaxGpuTest : public ::testing::TestWithParam<Case> {};

TEST_P(MaskedSoftmaxGpuTest, MatchesReference) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    test::with_element_type(GetParam().precision,
                            [&](auto element) { check_masked_softmax<decltype(element)>(GetParam()); });
}

INSTANTIATE_TEST_SUITE_P(Grid, MaskedSoftmaxGpuTest, ::testing::ValuesIn(grid_cases()), test::case_name<Case>);
INSTANTIATE_TEST_SUITE_P(Rules, MaskedSoftmaxGpuTest, ::testing::ValuesIn(rule_cases()), test::case_name<Case>);

}  // namespace
}  // namespace vqa

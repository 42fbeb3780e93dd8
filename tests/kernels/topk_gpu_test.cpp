// CUDA answer scoring against the CPU reference (cpu::softmax_rows / cpu::sigmoid, then cpu::topk): row lengths
// 1, 2, 31, 1000, 3129 (VQA v2's answer count), 3500 and the 8192 limit, k = 1, 5, 32 and k = A, the three
// activations, fp32/fp16/bf16 logits, many exact ties, and rows with NaN and ±inf logits.
//
// The checks, per case:
//  1. the full score row against the reference activation (float, a few ulps);
//  2. ids and values against cpu::topk run on the kernel's own score row, exactly: the order (ties by lower id,
//     NaN last) must be the reference's bit for bit, independently of last-ulp differences in the scores;
//  3. values against the reference's top k (close), and with no activation the ids against the reference's too;
//  4. a second run without the score row gives the same ids and values.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/topk.h"
#include "kernels/topk.h"
#include "tests/kernels/gpu_case.h"
#include "tests/kernels/test_util.h"

namespace vqa {
namespace {

using test::Precision;

struct Case {
    int batch = 3;       // B
    int num_scores = 1;  // A
    int k = 1;
    ScoreActivation activation = ScoreActivation::kSoftmax;
    Precision precision = Precision::kFp32;
    bool non_finite = false;  // row 1 holds NaNs, +inf and -inf; row 2 a lone NaN
};

const char* activation_name(ScoreActivation activation) {
    switch (activation) {
        case ScoreActivation::kNone:
            return "none";
        case ScoreActivation::kSoftmax:
            return "softmax";
        case ScoreActivation::kSigmoid:
            return "sigmoid";
    }
    return "unknown";
}

// B3_A3129_k5_softmax_fp16_nan
std::string case_string(const Case& c) {
    return "B" + std::to_string(c.batch) + "_A" + std::to_string(c.num_scores) + "_k" + std::to_string(c.k) + "_" +
           activation_name(c.activation) + "_" + test::precision_name(c.precision) + (c.non_finite ? "_nan" : "");
}
void PrintTo(const Case& c, std::ostream* out) {
    *out << case_string(c);
}

constexpr ScoreActivation kActivations[] = {ScoreActivation::kNone, ScoreActivation::kSoftmax,
                                            ScoreActivation::kSigmoid};

std::vector<Case> grid_cases() {
    std::vector<Case> cases;
    for (const int num_scores : {1, 2, 31, 1000, 3129, 3500}) {
        std::vector<int> ks;
        for (const int k : {1, 5, 32}) {
            if (k <= num_scores) {
                ks.push_back(k);
            }
        }
        if (num_scores < 32 && num_scores > 1) {
            ks.push_back(num_scores);  // every score ranked
        }
        for (const int k : ks) {
            for (const ScoreActivation activation : kActivations) {
                for (const Precision precision : test::kPrecisions) {
                    cases.push_back({3, num_scores, k, activation, precision});
                }
            }
        }
    }
    return cases;
}

std::vector<Case> variant_cases() {
    std::vector<Case> cases;
    for (const ScoreActivation activation : kActivations) {
        for (const Precision precision : test::kPrecisions) {
            cases.push_back({3, 31, 31, activation, precision, true});
            cases.push_back({3, 3129, 32, activation, precision, true});
        }
        cases.push_back({3, 8192, 32, activation, Precision::kFp32});  // the limit: 32 scores per thread
        cases.push_back({3, 256, 256, activation, Precision::kFp32});  // one score per thread, all ranked
        cases.push_back({3, 1000, 100, activation, Precision::kBf16});
        cases.push_back({64, 3129, 5, activation, Precision::kFp16});  // many rows
    }
    return cases;
}

// Logits in [-8, 8) as T sees them; one in three on a grid of 1/4, so equal scores (ties) are common.
template <typename T>
std::vector<float> make_logits(const Case& c) {
    const size_t n = static_cast<size_t>(c.batch) * c.num_scores;
    std::vector<float> logits = test::random_vector(n, 71, -8.0f, 8.0f);
    for (size_t i = 0; i < n; i += 3) {
        logits[i] = std::round(logits[i] * 4.0f) / 4.0f;
    }
    if (c.non_finite && c.batch >= 3) {
        const float nan = std::numeric_limits<float>::quiet_NaN();
        const float inf = std::numeric_limits<float>::infinity();
        float* row1 = logits.data() + c.num_scores;
        for (int j = 0; j < c.num_scores; j += 7) {
            row1[j] = nan;
        }
        row1[c.num_scores / 2] = inf;
        row1[c.num_scores - 1] = -inf;
        logits[2 * static_cast<size_t>(c.num_scores) + 3] = nan;
    }
    return test::round_to<T>(logits);
}

// Equal when both are NaN or both have the same bits otherwise (0 and -0 are told apart, as a copy keeps them).
bool same_value(float a, float b) {
    if (std::isnan(a) || std::isnan(b)) {
        return std::isnan(a) && std::isnan(b);
    }
    uint32_t a_bits = 0;
    uint32_t b_bits = 0;
    std::memcpy(&a_bits, &a, sizeof(a));
    std::memcpy(&b_bits, &b, sizeof(b));
    return a_bits == b_bits;
}

// all_close, where a NaN on both sides at the same place is a match (a softmax over a row with a NaN is NaN, in
// the reference too); a NaN on one side only still fails.
::testing::AssertionResult close_or_both_nan(std::vector<float> found,
                                             std::vector<float> expected,
                                             const test::Tolerance& tol,
                                             const std::vector<int64_t>& shape) {
    for (size_t i = 0; i < found.size() && i < expected.size(); ++i) {
        if (std::isnan(found[i]) && std::isnan(expected[i])) {
            found[i] = expected[i] = 0.0f;
        }
    }
    return test::all_close(found, expected, tol, shape);
}

template <typename T>
void check_answer_topk(const Case& c) {
    AnswerTopkParams p;
    p.batch = c.batch;
    p.num_scores = c.num_scores;
    p.k = c.k;
    p.activation = c.activation;
    const size_t n = static_cast<size_t>(p.batch * p.num_scores);
    const size_t top_n = static_cast<size_t>(p.batch * p.k);
    const std::vector<float> logits = make_logits<T>(c);

    std::vector<float> expected_scores = logits;
    if (c.activation == ScoreActivation::kSoftmax) {
        cpu::softmax_rows(logits.data(), expected_scores.data(), p.batch, p.num_scores);
    } else if (c.activation == ScoreActivation::kSigmoid) {
        cpu::sigmoid(logits.data(), expected_scores.data(), static_cast<int64_t>(n));
    }
    std::vector<int32_t> expected_ids(top_n);
    std::vector<float> expected_values(top_n);
    cpu::topk(expected_scores.data(), p.batch, p.num_scores, p.k, expected_ids.data(), expected_values.data());

    test::CudaStream stream;
    test::DeviceBuffer<T> logits_dev(n);
    test::DeviceBuffer<int32_t> ids_dev(top_n);
    test::DeviceBuffer<float> values_dev(top_n);
    test::DeviceBuffer<float> scores_dev(n);
    logits_dev.upload(test::from_float<T>(logits));
    ids_dev.poison_nan();  // all bits set: id -1
    values_dev.poison_nan();
    scores_dev.poison_nan();
    cuda::answer_topk(p, logits_dev.data(), ids_dev.data(), values_dev.data(), scores_dev.data(), stream.get());
    stream.synchronize();
    const std::vector<float> scores = scores_dev.download();
    const std::vector<int32_t> ids = ids_dev.download();
    const std::vector<float> values = values_dev.download();

    // 1. Float logits on both sides (fp16/bf16 as the kernel saw them), so fp32 tolerances in every precision.
    // Softmax: exp differs by an ulp or two and the sum of up to 8192 positive terms runs left to right in the
    // reference (error up to √A·eps typically, A·eps at worst) and as a tree here: rtol 3e-5.
    const double rtol = c.activation == ScoreActivation::kSoftmax ? 3e-5 : 1e-5;
    EXPECT_TRUE(close_or_both_nan(scores, expected_scores, test::Tolerance{1e-9, 1e-9, rtol}, {p.batch, p.num_scores}))
        << "score row";

    // 2. The order, exactly, on the kernel's own scores.
    std::vector<int32_t> order_ids(top_n);
    std::vector<float> order_values(top_n);
    cpu::topk(scores.data(), p.batch, p.num_scores, p.k, order_ids.data(), order_values.data());
    for (size_t i = 0; i < top_n; ++i) {
        ASSERT_EQ(ids[i], order_ids[i]) << "row " << i / c.k << ", rank " << i % c.k;
        ASSERT_TRUE(same_value(values[i], order_values[i]))
            << "row " << i / c.k << ", rank " << i % c.k << ": found " << values[i] << ", expected " << order_values[i];
    }

    // 3. Against the reference's own top k.
    EXPECT_TRUE(close_or_both_nan(values, expected_values, test::Tolerance{1e-9, 1e-9, rtol}, {p.batch, p.k}))
        << "top-k values";
    if (c.activation == ScoreActivation::kNone) {
        EXPECT_EQ(ids, expected_ids) << "without an activation the scores are the logits: the same ids";
    }

    // 4. Without the score row.
    ids_dev.poison_nan();
    values_dev.poison_nan();
    cuda::answer_topk(p, logits_dev.data(), ids_dev.data(), values_dev.data(), static_cast<float*>(nullptr),
                      stream.get());
    stream.synchronize();
    const std::vector<int32_t> ids_again = ids_dev.download();
    const std::vector<float> values_again = values_dev.download();
    EXPECT_EQ(ids_again, ids) << "ids without the score row";
    for (size_t i = 0; i < top_n; ++i) {
        ASSERT_TRUE(same_value(values_again[i], values[i])) << "value " << i << " without the score row";
    }
    EXPECT_TRUE(logits_dev.check_guards());
    EXPECT_TRUE(ids_dev.check_guards());
    EXPECT_TRUE(values_dev.check_guards());
    EXPECT_TRUE(scores_dev.check_guards());
}

class AnswerTopkGpuTest : public ::testing::TestWithParam<Case> {};

TEST_P(AnswerTopkGpuTest, MatchesReference) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    test::with_element_type(GetParam().precision,
                            [&](auto element) { check_answer_topk<decltype(element)>(GetParam()); });
}

INSTANTIATE_TEST_SUITE_P(Grid, AnswerTopkGpuTest, ::testing::ValuesIn(grid_cases()), test::case_name<Case>);
INSTANTIATE_TEST_SUITE_P(Variants, AnswerTopkGpuTest, ::testing::ValuesIn(variant_cases()), test::case_name<Case>);

}  // namespace
}  // namespace vqa

// CUDA head permutation against the CPU reference: every case bit-exact (a permutation does no arithmetic).
#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/split_heads.h"
#include "kernels/split_heads.h"
#include "tests/kernels/gpu_case.h"
#include "tests/kernels/test_util.h"
#include "vqa/error.h"

namespace vqa {
namespace {

using test::all_close;
using test::kExact;
using test::Precision;

struct Case {
    int batch = 1;      // B
    int seq_len = 1;    // L
    int num_heads = 1;  // H
    int head_dim = 1;   // Dh
    Precision precision = Precision::kFp32;
    int row_pad = 0;   // x_row_stride = H * Dh + row_pad (0: dense)
    int misalign = 0;  // both buffers start this many elements past a 256-byte boundary

    HeadsShape shape() const {
        return {batch, seq_len, num_heads, head_dim, row_pad == 0 ? 0 : int64_t{num_heads} * head_dim + row_pad};
    }
};

// B1_L14_H8_Dh64_fp16, with _pad<n> and _off<n> suffixes for strided and misaligned cases.
std::string case_string(const Case& c) {
    std::string name = "B" + std::to_string(c.batch) + "_L" + std::to_string(c.seq_len) + "_H" +
                       std::to_string(c.num_heads) + "_Dh" + std::to_string(c.head_dim) + "_" +
                       test::precision_name(c.precision);
    if (c.row_pad != 0) {
        name += "_pad" + std::to_string(c.row_pad);
    }
    if (c.misalign != 0) {
        name += "_off" + std::to_string(c.misalign);
    }
    return name;
}

// gtest prints the case this way in failure messages.
void PrintTo(const Case& c, std::ostream* out) {
    *out << case_string(c);
}

std::vector<Case> grid_cases() {
    std::vector<Case> cases;
    for (const int batch : {1, 3}) {
        for (const int seq_len : {1, 14, 33, 100}) {
            for (const int num_heads : {1, 8, 16}) {
                for (const int head_dim : {32, 64, 128, 5}) {
                    for (const Precision precision : test::kPrecisions) {
                        cases.push_back({batch, seq_len, num_heads, head_dim, precision});
                    }
                }
            }
        }
    }
    return cases;
}

// Strided x (a slice of a packed QKV row; an odd pad that narrows the vector width) and misaligned pointers
// (the element-wide fallback).
std::vector<Case> layout_cases() {
    std::vector<Case> cases;
    for (const Precision precision : test::kPrecisions) {
        cases.push_back({3, 14, 8, 64, precision, 2 * 8 * 64, 0});
        cases.push_back({3, 33, 8, 64, precision, 3, 0});
        cases.push_back({3, 33, 8, 64, precision, 0, 1});
        cases.push_back({2, 7, 3, 5, precision, 1, 3});
    }
    return cases;
}

size_t x_elems(const HeadsShape& s) {
    return static_cast<size_t>((int64_t{s.batch} * s.seq_len - 1) * s.row_stride() + int64_t{s.num_heads} * s.head_dim);
}

std::vector<int64_t> heads_dims(const HeadsShape& s) {
    return {s.batch, s.num_heads, s.seq_len, s.head_dim};
}

template <typename T>
void check_split_heads(const Case& c) {
    const HeadsShape shape = c.shape();
    const std::vector<float> x = test::round_to<T>(test::random_vector(x_elems(shape), 11));
    std::vector<float> expected(shape.numel());
    cpu::split_heads(x.data(), expected.data(), shape);

    test::CudaStream stream;
    test::DeviceBuffer<T> x_dev(x.size(), c.misalign);
    test::DeviceBuffer<T> y_dev(expected.size(), c.misalign);
    x_dev.upload(test::from_float<T>(x));
    y_dev.poison_nan();
    cuda::split_heads(x_dev.data(), y_dev.data(), shape, stream.get());
    stream.synchronize();

    EXPECT_TRUE(all_close(test::to_float(y_dev.download()), expected, kExact, heads_dims(shape)));
    EXPECT_TRUE(x_dev.check_guards());
    EXPECT_TRUE(y_dev.check_guards());
}

template <typename T>
void check_merge_heads(const Case& c) {
    const HeadsShape shape = c.shape();
    const std::vector<float> y = test::round_to<T>(test::random_vector(shape.numel(), 12));
    // The H*Dh columns of x are poisoned; the padding between rows holds values that must survive.
    std::vector<float> before = test::round_to<T>(test::random_vector(x_elems(shape), 13));
    for (size_t i = 0; i < before.size(); ++i) {
        if (static_cast<int64_t>(i % shape.row_stride()) < int64_t{shape.num_heads} * shape.head_dim) {
            before[i] = std::numeric_limits<float>::quiet_NaN();
        }
    }
    std::vector<float> expected = before;
    cpu::merge_heads(y.data(), expected.data(), shape);

    test::CudaStream stream;
    test::DeviceBuffer<T> y_dev(y.size(), c.misalign);
    test::DeviceBuffer<T> x_dev(before.size(), c.misalign);
    y_dev.upload(test::from_float<T>(y));
    x_dev.upload(test::from_float<T>(before));
    cuda::merge_heads(y_dev.data(), x_dev.data(), shape, stream.get());
    stream.synchronize();

    EXPECT_TRUE(all_close(test::to_float(x_dev.download()), expected, kExact));
    EXPECT_TRUE(x_dev.check_guards());
    EXPECT_TRUE(y_dev.check_guards());
}

class HeadPermutationGpuTest : public ::testing::TestWithParam<Case> {};

TEST_P(HeadPermutationGpuTest, SplitHeadsMatchesReference) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    test::with_element_type(GetParam().precision,
                            [&](auto element) { check_split_heads<decltype(element)>(GetParam()); });
}

TEST_P(HeadPermutationGpuTest, MergeHeadsMatchesReference) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    test::with_element_type(GetParam().precision,
                            [&](auto element) { check_merge_heads<decltype(element)>(GetParam()); });
}

INSTANTIATE_TEST_SUITE_P(Grid, HeadPermutationGpuTest, ::testing::ValuesIn(grid_cases()), test::case_name<Case>);
INSTANTIATE_TEST_SUITE_P(Layouts, HeadPermutationGpuTest, ::testing::ValuesIn(layout_cases()), test::case_name<Case>);

// Arguments are checked on the host before anything reaches the device, so this runs without a GPU.
TEST(HeadPermutationGpuArgs, RejectsInvalidShapeBeforeLaunch) {
    float x = 0.0f;
    float y = 0.0f;
    try {
        cuda::split_heads(&x, &y, HeadsShape{1, 1, 3, 5, 10}, nullptr);
        FAIL() << "expected vqa::Error";
    } catch (const Error& error) {
        EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
        EXPECT_NE(std::string(error.what()).find("split_heads: expected x_row_stride >= H * Dh = 15"),
                  std::string::npos)
            << error.what();
    }
    EXPECT_NO_THROW(
        cuda::merge_heads(static_cast<const __half*>(nullptr), nullptr, HeadsShape{0, 14, 8, 64, 0}, nullptr));
}

}  // namespace
}  // namespace vqa

// CPU reference of the head permutation: hand-computed cases, the index formula at odd sizes, round trips and
// argument checks.
#include "kernels/cpu/split_heads.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/split_heads.h"
#include "tests/kernels/test_util.h"
#include "vqa/error.h"

namespace vqa {
namespace {

using test::all_close;
using test::kExact;
using test::random_vector;

std::vector<int64_t> heads_dims(const HeadsShape& s) {
    return {s.batch, s.num_heads, s.seq_len, s.head_dim};
}

size_t x_elems(const HeadsShape& s) {
    const int64_t rows = int64_t{s.batch} * s.seq_len;
    return rows == 0 ? 0 : static_cast<size_t>((rows - 1) * s.row_stride() + int64_t{s.num_heads} * s.head_dim);
}

TEST(SplitHeadsReference, HandComputedTinyCase) {
    // B=1, L=2, H=2, Dh=2: x rows are tokens [t0h0 t0h1 | ...], y groups each head's tokens together.
    const HeadsShape shape{1, 2, 2, 2, 0};
    const std::vector<float> x = {1, 2, 3, 4,          // token 0: head 0 = (1, 2), head 1 = (3, 4)
                                  5, 6, 7, 8};         // token 1: head 0 = (5, 6), head 1 = (7, 8)
    const std::vector<float> expected = {1, 2, 5, 6,   // head 0: token 0, token 1
                                         3, 4, 7, 8};  // head 1: token 0, token 1
    std::vector<float> y(8);
    cpu::split_heads(x.data(), y.data(), shape);
    EXPECT_TRUE(all_close(y, expected, kExact, heads_dims(shape)));
}

// y[b, h, l, d] == x[b, l, h * Dh + d] at odd sizes, dense and with padded x rows.
TEST(SplitHeadsReference, MatchesIndexFormula) {
    for (const int64_t row_stride : {0, 17, 32}) {
        SCOPED_TRACE("x_row_stride " + std::to_string(row_stride));
        const HeadsShape shape{3, 7, 3, 5, row_stride};
        const std::vector<float> x = random_vector(x_elems(shape), 1);
        std::vector<float> y(shape.numel());
        test::poison_nan(y);
        cpu::split_heads(x.data(), y.data(), shape);

        std::vector<float> expected;
        for (int b = 0; b < shape.batch; ++b) {
            for (int h = 0; h < shape.num_heads; ++h) {
                for (int l = 0; l < shape.seq_len; ++l) {
                    for (int d = 0; d < shape.head_dim; ++d) {
                        expected.push_back(x[(b * shape.seq_len + l) * shape.row_stride() + h * shape.head_dim + d]);
                    }
                }
            }
        }
        EXPECT_TRUE(all_close(y, expected, kExact, heads_dims(shape)));
    }
}

// x[b, l, h * Dh + d] == y[b, h, l, d]; the padding between x rows keeps its values.
TEST(MergeHeadsReference, MatchesIndexFormulaAndKeepsPadding) {
    for (const int64_t row_stride : {0, 17}) {
        SCOPED_TRACE("x_row_stride " + std::to_string(row_stride));
        const HeadsShape shape{3, 7, 3, 5, row_stride};
        const std::vector<float> y = random_vector(shape.numel(), 2);
        const std::vector<float> before = random_vector(x_elems(shape), 3);
        std::vector<float> x = before;
        cpu::merge_heads(y.data(), x.data(), shape);

        std::vector<float> expected = before;
        for (int b = 0; b < shape.batch; ++b) {
            for (int l = 0; l < shape.seq_len; ++l) {
                for (int h = 0; h < shape.num_heads; ++h) {
                    for (int d = 0; d < shape.head_dim; ++d) {
                        expected[(b * shape.seq_len + l) * shape.row_stride() + h * shape.head_dim + d] =
                            y[((b * shape.num_heads + h) * shape.seq_len + l) * shape.head_dim + d];
                    }
                }
            }
        }
        EXPECT_TRUE(all_close(x, expected, kExact));
    }
}

// merge_heads(split_heads(x)) == x, including a shape large enough for the threaded path.
TEST(HeadPermutationReference, RoundTripIsIdentity) {
    const HeadsShape shapes[] = {
        {1, 1, 1, 1, 0}, {3, 7, 3, 5, 0}, {2, 14, 8, 64, 0}, {2, 33, 16, 32, 3 * 16 * 32}, {4, 64, 8, 64, 0}};
    for (const HeadsShape& shape : shapes) {
        SCOPED_TRACE("B" + std::to_string(shape.batch) + "_L" + std::to_string(shape.seq_len) + "_H" +
                     std::to_string(shape.num_heads) + "_Dh" + std::to_string(shape.head_dim));
        const std::vector<float> x = random_vector(x_elems(shape), 4);
        std::vector<float> y(shape.numel());
        std::vector<float> back(x.size(), 0.0f);
        cpu::split_heads(x.data(), y.data(), shape);
        cpu::merge_heads(y.data(), back.data(), shape);
        for (size_t i = 0; i < x.size(); ++i) {
            const bool padding = static_cast<int64_t>(i % shape.row_stride()) >= shape.num_heads * shape.head_dim;
            if (padding) {
                back[i] = x[i];  // merge_heads leaves padding alone; only the H*Dh columns round-trip
            }
        }
        EXPECT_TRUE(all_close(back, x, kExact));
    }
}

TEST(HeadPermutationReference, EmptyShapesAreNoOps) {
    EXPECT_NO_THROW(cpu::split_heads(nullptr, nullptr, HeadsShape{0, 7, 3, 5, 0}));
    EXPECT_NO_THROW(cpu::merge_heads(nullptr, nullptr, HeadsShape{3, 0, 3, 5, 0}));
    EXPECT_NO_THROW(cpu::split_heads(nullptr, nullptr, HeadsShape{3, 7, 0, 5, 0}));
}

// Runs f, expects a vqa::Error(kInvalidArgument) whose message contains `needle`.
template <typename F>
void expect_invalid_argument(F&& f, const std::string& needle) {
    try {
        f();
        ADD_FAILURE() << "expected vqa::Error containing \"" << needle << "\"";
    } catch (const Error& error) {
        EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
        EXPECT_NE(std::string(error.what()).find(needle), std::string::npos) << error.what();
    }
}

TEST(HeadPermutationReference, RejectsInvalidArguments) {
    std::vector<float> x(3 * 7 * 15);
    std::vector<float> y(3 * 7 * 15);
    const auto negative_size = [&] { cpu::split_heads(x.data(), y.data(), HeadsShape{3, -7, 3, 5, 0}); };
    const auto short_rows = [&] { cpu::merge_heads(y.data(), x.data(), HeadsShape{3, 7, 3, 5, 10}); };
    const auto null_input = [&] { cpu::split_heads(nullptr, y.data(), HeadsShape{3, 7, 3, 5, 0}); };
    const auto overlapping = [&] { cpu::split_heads(x.data(), x.data() + 10, HeadsShape{3, 7, 3, 5, 0}); };
    expect_invalid_argument(negative_size, "cpu::split_heads: expected non-negative sizes, got B=3 L=-7 H=3 Dh=5");
    expect_invalid_argument(short_rows,
                            "cpu::merge_heads: expected x_row_stride >= H * Dh = 15 (or 0 for dense rows), got 10");
    expect_invalid_argument(null_input, "cpu::split_heads: x and y must not be null");
    expect_invalid_argument(overlapping, "cpu::split_heads: x and y overlap");
}

TEST(HeadPermutationReference, ErrorNamesTheFailedCheckAndItsFile) {
    std::vector<float> x(15);
    try {
        cpu::split_heads(x.data(), x.data(), HeadsShape{1, 1, 3, 5, 0});
        FAIL() << "expected vqa::Error";
    } catch (const Error& error) {
        const std::string message = error.what();
        EXPECT_NE(message.find("(check `x_end <= y_begin || y_end <= x_begin` failed at split_heads.h:"),
                  std::string::npos)
            << message;
        EXPECT_STREQ(error_code_name(error.code()), "invalid_argument");
    }
}

}  // namespace
}  // namespace vqa

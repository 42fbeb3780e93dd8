// CPU linear and gemm against triple loops accumulated in double, over a grid of odd sizes with every epilogue
// combination (bias, residual, activation), plus strided and transposed GEMMs and argument checks.
#include "kernels/cpu/linear.h"

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

// fp32 GEMM vs a double reference: with |x|, |w| < 1 and K ≤ 100 the float sum stays within a few 1e-6 of the
// exact one, so atol is 1e-5 (rtol alone fails where the exact value is near 0); rtol 1e-5.
constexpr test::Tolerance kGemmTolerance{1e-7, 1e-5, 1e-5};

const char* activation_name(Activation act) {
    switch (act) {
        case Activation::kRelu:
            return "relu";
        case Activation::kTanh:
            return "tanh";
        case Activation::kNone:
            break;
    }
    return "none";
}

double reference_activation(double v, Activation act) {
    switch (act) {
        case Activation::kRelu:
            return v < 0.0 ? 0.0 : v;
        case Activation::kTanh:
            return std::tanh(v);
        case Activation::kNone:
            break;
    }
    return v;
}

struct LinearCase {
    int64_t M, N, K;
};

using LinearParam = std::tuple<LinearCase, bool, bool, Activation>;  // shape, bias, residual, activation

std::string linear_case_name(const testing::TestParamInfo<LinearParam>& info) {
    const auto& [shape, bias, residual, act] = info.param;
    return "M" + std::to_string(shape.M) + "_N" + std::to_string(shape.N) + "_K" + std::to_string(shape.K) +
           (bias ? "_bias" : "") + (residual ? "_residual" : "") + "_" + activation_name(act);
}

class LinearTest : public testing::TestWithParam<LinearParam> {};

TEST_P(LinearTest, MatchesNaiveReference) {
    const auto& [shape, with_bias, with_residual, act] = GetParam();
    const auto [M, N, K] = shape;
    const std::vector<float> x = random_vector(M * K, 1);
    const std::vector<float> w = random_vector(N * K, 2);
    const std::vector<float> b = random_vector(N, 3);
    const std::vector<float> r = random_vector(M * N, 4);
    std::vector<float> y(M * N);
    test::poison_nan(y);
    linear(x.data(), w.data(), with_bias ? b.data() : nullptr, with_residual ? r.data() : nullptr, y.data(), M, N, K,
           act);

    std::vector<float> expected(M * N);
    for (int64_t m = 0; m < M; ++m) {
        for (int64_t n = 0; n < N; ++n) {
            double acc = 0.0;
            for (int64_t k = 0; k < K; ++k) {
                acc += static_cast<double>(x[m * K + k]) * w[n * K + k];
            }
            acc += (with_bias ? b[n] : 0.0) + (with_residual ? r[m * N + n] : 0.0);
            expected[m * N + n] = static_cast<float>(reference_activation(acc, act));
        }
    }
    EXPECT_TRUE(all_close(y, expected, kGemmTolerance, {M, N}));
}

INSTANTIATE_TEST_SUITE_P(Shapes,
                         LinearTest,
                         testing::Combine(testing::Values(LinearCase{1, 1, 1},
                                                          LinearCase{2, 3, 7},
                                                          LinearCase{7, 31, 33},
                                                          LinearCase{32, 33, 31},
                                                          LinearCase{100, 7, 100},
                                                          LinearCase{33, 100, 2}),
                                          testing::Bool(),
                                          testing::Bool(),
                                          testing::Values(Activation::kNone, Activation::kRelu, Activation::kTanh)),
                         linear_case_name);

TEST(LinearReference, ResidualInPlace) {
    const int64_t M = 7, N = 33, K = 31;
    const std::vector<float> x = random_vector(M * K, 5);
    const std::vector<float> w = random_vector(N * K, 6);
    const std::vector<float> r = random_vector(M * N, 7);
    std::vector<float> expected(M * N);
    linear(x.data(), w.data(), nullptr, r.data(), expected.data(), M, N, K, Activation::kRelu);
    std::vector<float> y = r;  // y is the residual: y = relu(x wᵀ + y)
    linear(x.data(), w.data(), nullptr, y.data(), y.data(), M, N, K, Activation::kRelu);
    EXPECT_TRUE(all_close(y, expected, test::kExact));
}

TEST(LinearReference, EmptyInnerDimensionGivesBias) {
    const std::vector<float> b = random_vector(3, 8);
    std::vector<float> y(2 * 3);
    test::poison_nan(y);
    linear(nullptr, nullptr, b.data(), nullptr, y.data(), 2, 3, 0);
    EXPECT_TRUE(all_close(y, {b[0], b[1], b[2], b[0], b[1], b[2]}, test::kExact));
}

struct GemmCase {
    bool trans_a, trans_b;
    int64_t M, N, K;
    int64_t pad;  // extra elements at the end of every row of A, B and C
    float alpha, beta;
};

std::string gemm_case_name(const testing::TestParamInfo<GemmCase>& info) {
    const GemmCase& c = info.param;
    return std::string(c.trans_a ? "At" : "A") + (c.trans_b ? "Bt" : "B") + "_M" + std::to_string(c.M) + "_N" +
           std::to_string(c.N) + "_K" + std::to_string(c.K) + "_pad" + std::to_string(c.pad) +
           (c.beta != 0.0f ? "_beta" : "");
}

class GemmTest : public testing::TestWithParam<GemmCase> {};

TEST_P(GemmTest, MatchesNaiveReference) {
    const GemmCase& c = GetParam();
    const int64_t a_rows = c.trans_a ? c.K : c.M, a_cols = c.trans_a ? c.M : c.K;
    const int64_t b_rows = c.trans_b ? c.N : c.K, b_cols = c.trans_b ? c.K : c.N;
    const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.N + c.pad;
    const std::vector<float> a = random_vector(a_rows * lda, 11);
    const std::vector<float> b = random_vector(b_rows * ldb, 12);
    std::vector<float> cmat = random_vector(c.M * ldc, 13);
    if (c.beta == 0.0f) {
        test::poison_nan(cmat);  // beta = 0: C must not be read
    }
    std::vector<float> expected = cmat;
    for (int64_t m = 0; m < c.M; ++m) {
        for (int64_t n = 0; n < c.N; ++n) {
            double acc = 0.0;
            for (int64_t k = 0; k < c.K; ++k) {
                const float av = c.trans_a ? a[k * lda + m] : a[m * lda + k];
                const float bv = c.trans_b ? b[n * ldb + k] : b[k * ldb + n];
                acc += static_cast<double>(av) * bv;
            }
            const double old = c.beta != 0.0f ? static_cast<double>(c.beta) * cmat[m * ldc + n] : 0.0;
            expected[m * ldc + n] = static_cast<float>(c.alpha * acc + old);
        }
    }
    gemm(c.trans_a, c.trans_b, c.M, c.N, c.K, c.alpha, a.data(), lda, b.data(), ldb, c.beta, cmat.data(), ldc);
    if (c.beta == 0.0f && c.pad > 0) {
        // the padding of C is not part of the product: it keeps its NaN; compare only the product
        for (int64_t m = 0; m < c.M; ++m) {
            for (int64_t n = c.N; n < ldc; ++n) {
                cmat[m * ldc + n] = expected[m * ldc + n] = 0.0f;
            }
        }
    }
    EXPECT_TRUE(all_close(cmat, expected, kGemmTolerance, {c.M, ldc}));
}

INSTANTIATE_TEST_SUITE_P(Shapes,
                         GemmTest,
                         testing::Values(GemmCase{false, false, 1, 1, 1, 0, 1.0f, 0.0f},
                                         GemmCase{false, true, 7, 31, 33, 3, 0.5f, 0.0f},
                                         GemmCase{true, false, 33, 2, 100, 5, 1.0f, 1.0f},
                                         GemmCase{true, true, 32, 7, 31, 0, 2.0f, 0.25f},
                                         GemmCase{false, false, 3, 100, 0, 1, 1.0f, 0.5f}),
                         gemm_case_name);

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

TEST(LinearReference, RejectsInvalidArguments) {
    std::vector<float> buf(64, 1.0f);
    expect_invalid_argument([&] { linear(buf.data(), buf.data(), nullptr, nullptr, buf.data(), 2, 2, 2); },
                            "y must not alias x");
    expect_invalid_argument([&] { linear(buf.data(), buf.data(), nullptr, nullptr, buf.data() + 8, -1, 2, 2); },
                            "negative size M=-1");
    expect_invalid_argument(
        [&] { gemm(false, false, 2, 4, 3, 1.0f, buf.data(), 2, buf.data(), 4, 0.0f, buf.data() + 32, 4); },
        "lda=2 (row 3)");
}

}  // namespace
}  // namespace vqa::cpu

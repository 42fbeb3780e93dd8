// CUDA LayerNorm against the CPU reference (cpu::layer_norm): rows 1..1000, row lengths around the warp-per-row
// limit (31/32/33, 1023/1024/1025) and past it (block per row), both variants, with and without the residual,
// fp32/fp16/bf16; in place over x and over the residual, the pre-norm sum output (also over x), misaligned
// pointers (the element-wise path) and constant rows (zero variance).
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/layer_norm.h"
#include "kernels/layer_norm.h"
#include "tests/kernels/gpu_case.h"
#include "tests/kernels/test_util.h"

namespace vqa {
namespace {

using cpu::LayerNormVariant;
using test::Precision;

enum class Output {
    kOwn,           // y has its own buffer
    kOverX,         // y = x (in place)
    kOverResidual,  // y = residual (in place; needs a residual)
};

enum class PreNorm {
    kNone,   // no pre-norm output
    kOwn,    // pre_norm has its own buffer
    kOverX,  // pre_norm = x: the pre-norm layer's `x = x + r`, with y = LN(x) beside it
};

struct Case {
    int64_t rows = 1;  // M
    int64_t dim = 1;   // d
    Precision precision = Precision::kFp32;
    bool residual = false;
    LayerNormVariant variant = LayerNormVariant::kStandard;
    Output output = Output::kOwn;
    PreNorm pre_norm = PreNorm::kNone;
    int misalign = 0;       // every buffer (x, residual, y, pre_norm, weight, bias) starts this many elements late
    bool constant = false;  // every row of x constant (row 0 all zeros), no residual: zero variance
};

// M33_d257_fp16_residual_unbiased, with _inplace_x/_inplace_res, _prenorm/_prenorm_x, _off<n> and _const.
std::string case_string(const Case& c) {
    std::string name = "M" + std::to_string(c.rows) + "_d" + std::to_string(c.dim) + "_" +
                       test::precision_name(c.precision) + (c.residual ? "_residual" : "") +
                       (c.variant == LayerNormVariant::kStandard ? "_standard" : "_unbiased");
    if (c.output == Output::kOverX) {
        name += "_inplace_x";
    } else if (c.output == Output::kOverResidual) {
        name += "_inplace_res";
    }
    if (c.pre_norm == PreNorm::kOwn) {
        name += "_prenorm";
    } else if (c.pre_norm == PreNorm::kOverX) {
        name += "_prenorm_x";
    }
    if (c.misalign != 0) {
        name += "_off" + std::to_string(c.misalign);
    }
    return name + (c.constant ? "_const" : "");
}
void PrintTo(const Case& c, std::ostream* out) {
    *out << case_string(c);
}

constexpr int64_t kDims[] = {1, 2, 31, 32, 33, 64, 255, 256, 512, 1023, 1024, 1025, 2048, 3000};

std::vector<Case> grid_cases() {
    std::vector<Case> cases;
    for (const int64_t rows : {1, 2, 33, 1000}) {
        for (const int64_t dim : kDims) {
            for (const Precision precision : test::kPrecisions) {
                for (const bool residual : {false, true}) {
                    cases.push_back({rows, dim, precision, residual, LayerNormVariant::kStandard});
                    if (dim >= 2) {  // d = 1 is rejected for the unbiased variant (cuda_kernel_args_test)
                        cases.push_back({rows, dim, precision, residual, LayerNormVariant::kUnbiasedStd});
                    }
                }
            }
        }
    }
    return cases;
}

// In place, pre-norm outputs, misaligned pointers and constant rows, on both kernels and both load paths
// (33: warp, element-wise; 256/1024: warp, 16-byte; 1025: block, element-wise; 3000: block, 16-byte).
std::vector<Case> layout_cases() {
    std::vector<Case> cases;
    for (const int64_t dim : {33, 256, 1024, 1025, 3000}) {
        for (const Precision precision : test::kPrecisions) {
            const LayerNormVariant unbiased = LayerNormVariant::kUnbiasedStd;
            const LayerNormVariant standard = LayerNormVariant::kStandard;
            cases.push_back({33, dim, precision, true, standard, Output::kOverX});
            cases.push_back({33, dim, precision, true, unbiased, Output::kOverResidual});
            cases.push_back({33, dim, precision, false, unbiased, Output::kOverX});
            cases.push_back({33, dim, precision, true, standard, Output::kOwn, PreNorm::kOwn});
            cases.push_back({33, dim, precision, true, unbiased, Output::kOverResidual, PreNorm::kOverX});
            cases.push_back({33, dim, precision, false, standard, Output::kOwn, PreNorm::kOwn});
            cases.push_back({33, dim, precision, true, standard, Output::kOwn, PreNorm::kOwn, 1});
            cases.push_back({33, dim, precision, true, unbiased, Output::kOverX, PreNorm::kNone, 1});
            cases.push_back({2, dim, precision, false, standard, Output::kOwn, PreNorm::kNone, 0, true});
            cases.push_back({2, dim, precision, false, unbiased, Output::kOwn, PreNorm::kNone, 0, true});
        }
    }
    return cases;
}

template <typename T>
void check_layer_norm(const Case& c) {
    const int64_t M = c.rows;
    const int64_t d = c.dim;
    const auto n = static_cast<size_t>(M * d);
    const float eps = 1e-5f;
    // x around 1 rather than 0, so that a missing or wrong mean shows; the residual is centred.
    std::vector<float> x = test::round_to<T>(test::random_vector(n, 41, -1.0f, 3.0f));
    if (c.constant) {
        for (int64_t r = 0; r < M; ++r) {
            for (int64_t j = 0; j < d; ++j) {
                x[r * d + j] = r == 0 ? 0.0f : x[r * d];
            }
        }
    }
    const std::vector<float> residual = test::round_to<T>(test::random_vector(n, 42));
    const std::vector<float> weight = test::random_vector(d, 43, 0.5f, 1.5f);
    const std::vector<float> bias = test::random_vector(d, 44);

    // The kernel rounds x + r to T before the statistics; the fp32 reference does the same sum itself, and for
    // fp16/bf16 it is given the rounded sum (the contract) as its input, without a residual.
    std::vector<float> sum = x;
    if (c.residual) {
        for (size_t i = 0; i < n; ++i) {
            sum[i] = x[i] + residual[i];
        }
        sum = test::round_to<T>(sum);
    }
    std::vector<float> expected(n);
    if (c.precision == Precision::kFp32) {
        cpu::layer_norm(x.data(), c.residual ? residual.data() : nullptr, weight.data(), bias.data(), expected.data(),
                        M, d, eps, c.variant);
    } else {
        cpu::layer_norm(sum.data(), nullptr, weight.data(), bias.data(), expected.data(), M, d, eps, c.variant);
    }

    test::CudaStream stream;
    test::DeviceBuffer<T> x_dev(n, c.misalign);
    test::DeviceBuffer<T> residual_dev(n, c.misalign);
    test::DeviceBuffer<T> y_dev(n, c.misalign);
    test::DeviceBuffer<T> pre_norm_dev(n, c.misalign);
    test::DeviceBuffer<float> weight_dev(static_cast<size_t>(d), c.misalign);
    test::DeviceBuffer<float> bias_dev(static_cast<size_t>(d), c.misalign);
    x_dev.upload(test::from_float<T>(x));
    residual_dev.upload(test::from_float<T>(residual));
    weight_dev.upload(weight);
    bias_dev.upload(bias);
    y_dev.poison_nan();
    pre_norm_dev.poison_nan();

    test::DeviceBuffer<T>& y_buffer =
        c.output == Output::kOverX ? x_dev : (c.output == Output::kOverResidual ? residual_dev : y_dev);
    test::DeviceBuffer<T>& pre_norm_buffer = c.pre_norm == PreNorm::kOverX ? x_dev : pre_norm_dev;
    LayerNormParams p;
    p.rows = M;
    p.dim = d;
    p.eps = eps;
    p.variant = c.variant;
    cuda::layer_norm<T>(p, x_dev.data(), c.residual ? residual_dev.data() : nullptr, weight_dev.data(), bias_dev.data(),
                        y_buffer.data(), c.pre_norm == PreNorm::kNone ? nullptr : pre_norm_buffer.data(), stream.get());
    stream.synchronize();

    // fp32: float statistics (a two-pass mean and M2, corrected for the first-pass mean's rounding) against the
    // reference's double ones differ by a few float ulps, and so does the output (|y| up to about 5): atol 1e-5
    // covers outputs that cancel to near zero, rtol 1e-5 the rest. fp16/bf16: the output is rounded to the element
    // type (at most 2^-9 relative for bf16, one ulp more when the float results straddle a rounding boundary).
    const test::Tolerance tol =
        c.precision == Precision::kFp32 ? test::Tolerance{1e-10, 1e-5, 1e-5} : test::Tolerance{1e-4, 1e-3, 1e-2};
    EXPECT_TRUE(test::all_close(test::to_float(y_buffer.download()), expected, tol, {M, d}));
    if (c.pre_norm != PreNorm::kNone) {
        EXPECT_TRUE(test::all_close(test::to_float(pre_norm_buffer.download()), sum, test::kExact, {M, d}))
            << "pre_norm";
    }
    EXPECT_TRUE(x_dev.check_guards());
    EXPECT_TRUE(residual_dev.check_guards());
    EXPECT_TRUE(y_dev.check_guards());
    EXPECT_TRUE(pre_norm_dev.check_guards());
    EXPECT_TRUE(weight_dev.check_guards());
    EXPECT_TRUE(bias_dev.check_guards());
}

class LayerNormGpuTest : public ::testing::TestWithParam<Case> {};

TEST_P(LayerNormGpuTest, MatchesReference) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    test::with_element_type(GetParam().precision,
                            [&](auto element) { check_layer_norm<decltype(element)>(GetParam()); });
}

INSTANTIATE_TEST_SUITE_P(Grid, LayerNormGpuTest, ::testing::ValuesIn(grid_cases()), test::case_name<Case>);
INSTANTIATE_TEST_SUITE_P(Layouts, LayerNormGpuTest, ::testing::ValuesIn(layout_cases()), test::case_name<Case>);

}  // namespace
}  // namespace vqa

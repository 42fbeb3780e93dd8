// CUDA bias + residual + activation against the CPU reference (cpu::add_inplace for the residual, then
// cpu::bias_act, the CPU linear epilogue's order): rows 1..1000, row lengths 1..3000 around the 16-byte word
// boundaries, every activation, with and without bias and residual, fp32/fp16/bf16; in place over x and over the
// residual, and misaligned pointers (the element-wise path).
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/bias_act.h"
#include "kernels/cpu/bias_act.h"
#include "tests/kernels/gpu_case.h"
#include "tests/kernels/test_util.h"

namespace vqa {
namespace {

using cpu::Activation;
using test::Precision;

enum class Output {
    kOwn,           // y has its own buffer
    kOverX,         // y = x (in place)
    kOverResidual,  // y = residual (the ResNet add in place; needs a residual)
};

struct Case {
    int64_t rows = 1;
    int64_t cols = 1;
    Precision precision = Precision::kFp32;
    Activation act = Activation::kNone;
    bool bias = true;
    bool residual = false;
    Output output = Output::kOwn;
    int misalign = 0;  // x, bias, residual and y start this many elements late
};

const char* activation_name(Activation act) {
    switch (act) {
        case Activation::kNone:
            return "none";
        case Activation::kRelu:
            return "relu";
        case Activation::kTanh:
            return "tanh";
    }
    return "unknown";
}

// R33_C257_fp16_relu_bias_residual, with _inplace_x/_inplace_res and _off<n>.
std::string case_string(const Case& c) {
    std::string name = "R" + std::to_string(c.rows) + "_C" + std::to_string(c.cols) + "_" +
                       test::precision_name(c.precision) + "_" + activation_name(c.act) + (c.bias ? "_bias" : "") +
                       (c.residual ? "_residual" : "");
    if (c.output == Output::kOverX) {
        name += "_inplace_x";
    } else if (c.output == Output::kOverResidual) {
        name += "_inplace_res";
    }
    if (c.misalign != 0) {
        name += "_off" + std::to_string(c.misalign);
    }
    return name;
}
void PrintTo(const Case& c, std::ostream* out) {
    *out << case_string(c);
}

std::vector<Case> grid_cases() {
    std::vector<Case> cases;
    for (const int64_t rows : {1, 2, 33, 1000}) {
        for (const int64_t cols : {1, 2, 31, 32, 33, 64, 255, 256, 512, 1023, 1024, 1025, 2048, 3000}) {
            for (const Precision precision : test::kPrecisions) {
                cases.push_back({rows, cols, precision, Activation::kRelu, true, true});  // relu(bn(conv) + identity)
                cases.push_back({rows, cols, precision, Activation::kTanh, true, false});
                cases.push_back({rows, cols, precision, Activation::kNone, false, true});
            }
        }
    }
    return cases;
}

// In place and misaligned, on a vectorisable width (256) and an odd one (33).
std::vector<Case> layout_cases() {
    std::vector<Case> cases;
    for (const int64_t cols : {33, 256}) {
        for (const Precision precision : test::kPrecisions) {
            cases.push_back({33, cols, precision, Activation::kRelu, true, true, Output::kOverX});
            cases.push_back({33, cols, precision, Activation::kRelu, true, true, Output::kOverResidual});
            cases.push_back({33, cols, precision, Activation::kTanh, true, false, Output::kOverX});
            cases.push_back({33, cols, precision, Activation::kNone, true, false, Output::kOwn});
            cases.push_back({33, cols, precision, Activation::kRelu, false, false, Output::kOwn});
            cases.push_back({33, cols, precision, Activation::kRelu, true, true, Output::kOwn, 1});
            cases.push_back({33, cols, precision, Activation::kTanh, true, true, Output::kOverResidual, 1});
        }
    }
    return cases;
}

template <typename T>
void check_bias_act(const Case& c) {
    const auto n = static_cast<size_t>(c.rows * c.cols);
    // x spans both sides of zero and past tanh's linear range; the residual and bias shift it.
    const std::vector<float> x = test::round_to<T>(test::random_vector(n, 51, -3.0f, 3.0f));
    const std::vector<float> residual = test::round_to<T>(test::random_vector(n, 52));
    const std::vector<float> bias = test::random_vector(static_cast<size_t>(c.cols), 53);

    std::vector<float> sum = x;
    if (c.residual) {
        cpu::add_inplace(sum.data(), residual.data(), static_cast<int64_t>(n));
    }
    std::vector<float> expected(n);
    cpu::bias_act(sum.data(), c.bias ? bias.data() : nullptr, expected.data(), c.rows, c.cols, c.act);

    test::CudaStream stream;
    test::DeviceBuffer<T> x_dev(n, c.misalign);
    test::DeviceBuffer<T> residual_dev(n, c.misalign);
    test::DeviceBuffer<T> y_dev(n, c.misalign);
    test::DeviceBuffer<float> bias_dev(static_cast<size_t>(c.cols), c.misalign);
    x_dev.upload(test::from_float<T>(x));
    residual_dev.upload(test::from_float<T>(residual));
    bias_dev.upload(bias);
    y_dev.poison_nan();

    test::DeviceBuffer<T>& y_buffer =
        c.output == Output::kOverX ? x_dev : (c.output == Output::kOverResidual ? residual_dev : y_dev);
    cuda::bias_act<T>(x_dev.data(), c.bias ? bias_dev.data() : nullptr, c.residual ? residual_dev.data() : nullptr,
                      y_buffer.data(), c.rows, c.cols, c.act, stream.get());
    stream.synchronize();

    // fp32: the same float additions in the same order; tanhf differs by an ulp or two between CUDA and the C
    // library, within rtol 1e-5. fp16/bf16: the float result is rounded to the element type once (at most 2^-9
    // relative for bf16).
    const test::Tolerance tol =
        c.precision == Precision::kFp32 ? test::Tolerance{1e-10, 1e-6, 1e-5} : test::Tolerance{1e-4, 1e-3, 1e-2};
    EXPECT_TRUE(test::all_close(test::to_float(y_buffer.download()), expected, tol, {c.rows, c.cols}));
    EXPECT_TRUE(x_dev.check_guards());
    EXPECT_TRUE(residual_dev.check_guards());
    EXPECT_TRUE(y_dev.check_guards());
    EXPECT_TRUE(bias_dev.check_guards());
}

class BiasActGpuTest : public ::testing::TestWithParam<Case> {};

TEST_P(BiasActGpuTest, MatchesReference) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    test::with_element_type(GetParam().precision, [&](auto element) { check_bias_act<decltype(element)>(GetParam()); });
}

INSTANTIATE_TEST_SUITE_P(Grid, BiasActGpuTest, ::testing::ValuesIn(grid_cases()), test::case_name<Case>);
INSTANTIATE_TEST_SUITE_P(Layouts, BiasActGpuTest, ::testing::ValuesIn(layout_cases()), test::case_name<Case>);

}  // namespace
}  // namespace vqa

// CPU reference of the fused head projection (cpu::fused_qkv_projection) against a double-precision loop:
// G = 1, 2, 3, with and without bias, dense and strided x; argument checks.
#include "kernels/cpu/qkv_projection.h"

#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/kernels/test_util.h"
#include "vqa/error.h"

namespace vqa::cpu {
namespace {

// outputs[g][b, h, l, e] = scales[g] · (Σ_k x[b·L + l, k] · w[n, k] + bias[n]), n = g·H·Dh + h·Dh + e.
std::vector<std::vector<float>> naive_projection(const HeadProjectionParams& p,
                                                 const std::vector<float>& x,
                                                 const std::vector<float>& w,
                                                 const float* bias) {
    std::vector<std::vector<float>> out(p.num_groups, std::vector<float>(p.rows() * p.group_cols()));
    for (int64_t m = 0; m < p.rows(); ++m) {
        for (int64_t n = 0; n < p.cols(); ++n) {
            double sum = bias != nullptr ? bias[n] : 0.0;
            for (int64_t k = 0; k < p.in_features; ++k) {
                sum += double{x[m * p.x_stride() + k]} * w[n * p.in_features + k];
            }
            const int64_t g = n / p.group_cols();
            const int64_t h = (n % p.group_cols()) / p.head_dim;
            const int64_t e = n % p.head_dim;
            const int64_t b = m / p.seq_len;
            const int64_t l = m % p.seq_len;
            out[g][((b * p.num_heads + h) * p.seq_len + l) * p.head_dim + e] = static_cast<float>(sum * p.scales[g]);
        }
    }
    return out;
}

struct Shape {
    int groups;
    bool bias;
    int x_pad;
};

class QkvProjectionTest : public ::testing::TestWithParam<Shape> {};

TEST_P(QkvProjectionTest, MatchesNaiveLoop) {
    const Shape s = GetParam();
    HeadProjectionParams p = cross_projection_params(3, 7, 24, 4, s.groups, 0.5f);
    p.scales[s.groups - 1] = s.groups > 1 ? 2.0f : p.scales[0];  // a scale on a non-Q group as well
    p.x_row_stride = s.x_pad == 0 ? 0 : p.in_features + s.x_pad;
    const std::vector<float> x = test::random_vector((p.rows() - 1) * p.x_stride() + p.in_features, 7);
    const std::vector<float> w = test::random_vector(p.cols() * p.in_features, 8);
    const std::vector<float> bias = test::random_vector(p.cols(), 9);
    const float* bias_ptr = s.bias ? bias.data() : nullptr;
    const auto expected = naive_projection(p, x, w, bias_ptr);

    std::vector<std::vector<float>> found(p.num_groups, std::vector<float>(p.rows() * p.group_cols()));
    HeadOutputs<float> outputs;
    for (int g = 0; g < p.num_groups; ++g) {
        test::poison_nan(found[g]);
        outputs.group[g] = found[g].data();
    }
    fused_qkv_projection(p, x.data(), w.data(), bias_ptr, outputs);
    for (int g = 0; g < p.num_groups; ++g) {
        EXPECT_TRUE(test::all_close(found[g], expected[g], test::Tolerance{1e-12, 1e-5, 1e-5})) << "group " << g;
    }
}

INSTANTIATE_TEST_SUITE_P(Groups,
                         QkvProjectionTest,
                         ::testing::Values(Shape{1, true, 0},
                                           Shape{2, true, 0},
                                           Shape{3, true, 0},
                                           Shape{3, false, 0},
                                           Shape{3, true, 5},
                                           Shape{2, false, 3}),
                         [](const ::testing::TestParamInfo<Shape>& info) {
                             return "G" + std::to_string(info.param.groups) + (info.param.bias ? "" : "_nobias") +
                                    (info.param.x_pad != 0 ? "_pad" + std::to_string(info.param.x_pad) : "");
                         });

TEST(QkvProjectionArgs, RejectsBadArguments) {
    float data[8] = {};
    HeadOutputs<float> outputs;
    outputs.group[0] = data;
    HeadProjectionParams p = cross_projection_params(1, 1, 2, 1, 4, 1.0f);
    try {
        fused_qkv_projection(p, data, data, nullptr, outputs);
        FAIL() << "expected vqa::Error";
    } catch (const Error& error) {
        EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
        EXPECT_NE(std::string(error.what()).find("num_groups must be 1 (Q), 2 (K, V) or 3 (Q, K, V), got 4"),
                  std::string::npos)
            << error.what();
    }
    p = cross_projection_params(1, 1, 2, 1, 2, 1.0f);
    try {
        fused_qkv_projection(p, data, data, nullptr, outputs);
        FAIL() << "expected vqa::Error";
    } catch (const Error& error) {
        EXPECT_NE(std::string(error.what()).find("output of group 1 is null but 2 groups were asked for"),
                  std::string::npos)
            << error.what();
    }
    p = qkv_projection_params(0, 14, 8, 2, 1.0f);
    EXPECT_NO_THROW(fused_qkv_projection(p, nullptr, nullptr, nullptr, HeadOutputs<float>{}));
}

}  // namespace
}  // namespace vqa::cpu

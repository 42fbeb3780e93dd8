// CUDA fused head projection against the CPU reference (cpu::fused_qkv_projection): self-attention QKV (G = 3),
// cross-attention Q (G = 1) and KV (G = 2); M = B·L, N and K around and off the 64 × 64 × (32 | 16) tiles; the
// 16-byte paths and their element-wise fallbacks (K or Dh not a multiple of 16 bytes, strided or misaligned x).
#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/qkv_projection.h"
#include "kernels/qkv_projection.h"
#include "tests/kernels/gpu_case.h"
#include "tests/kernels/test_util.h"

namespace vqa {
namespace {

using test::Precision;

struct Case {
    int batch = 1;      // B
    int seq_len = 1;    // L
    int heads = 1;      // H
    int head_dim = 64;  // Dh
    int groups = 3;     // G
    Precision precision = Precision::kFp32;
    int in_features = 0;  // K; 0 means d = H·Dh
    bool bias = true;
    int x_pad = 0;     // x_row_stride = K + x_pad (0: dense)
    int misalign = 0;  // every buffer this many elements off 16-byte alignment

    int depth() const { return in_features > 0 ? in_features : heads * head_dim; }
    HeadProjectionParams params() const {
        HeadProjectionParams p = cross_projection_params(batch, seq_len, heads * head_dim, heads, groups,
                                                         1.0f / std::sqrt(static_cast<float>(head_dim)));
        p.in_features = depth();
        p.x_row_stride = x_pad == 0 ? 0 : depth() + x_pad;
        return p;
    }
};

// B1_L14_H8_Dh64_G3_fp16, with _K<n>, _nobias, _pad<n> and _off<n> suffixes.
std::string case_string(const Case& c) {
    std::string name = "B" + std::to_string(c.batch) + "_L" + std::to_string(c.seq_len) + "_H" +
                       std::to_string(c.heads) + "_Dh" + std::to_string(c.head_dim) + "_G" + std::to_string(c.groups) +
                       "_" + test::precision_name(c.precision);
    name += c.in_features > 0 ? "_K" + std::to_string(c.in_features) : "";
    name += c.bias ? "" : "_nobias";
    name += c.x_pad != 0 ? "_pad" + std::to_string(c.x_pad) : "";
    name += c.misalign != 0 ? "_off" + std::to_string(c.misalign) : "";
    return name;
}
void PrintTo(const Case& c, std::ostream* out) {
    *out << case_string(c);
}

std::vector<Case> grid_cases() {
    std::vector<Case> cases;
    for (const Precision precision : test::kPrecisions) {
        for (const int batch : {1, 3}) {
            for (const int seq_len : {1, 13, 14, 33, 100}) {
                cases.push_back({batch, seq_len, 8, 64, 3, precision});  // d = 512, N = 1536
            }
        }
        for (const int groups : {1, 2}) {
            cases.push_back({2, 14, 8, 64, groups, precision});
            cases.push_back({2, 100, 8, 64, groups, precision});
        }
        cases.push_back({1, 14, 1, 32, 3, precision});    // one head, N = 96 (partial N tile)
        cases.push_back({2, 33, 16, 64, 3, precision});   // d = 1024, 16 heads
        cases.push_back({3, 13, 8, 128, 2, precision});   // Dh = 128
        cases.push_back({32, 100, 8, 64, 3, precision});  // M = 3200
        cases.push_back({256, 14, 8, 64, 1, precision});  // M = 3584, cross-attention Q
    }
    return cases;
}

std::vector<Case> edge_cases() {
    std::vector<Case> cases;
    for (const Precision precision : test::kPrecisions) {
        cases.push_back({2, 13, 8, 64, 3, precision, 0, false});       // no bias
        cases.push_back({2, 13, 8, 64, 3, precision, 104});            // K = 104: K tail, 16-byte chunks
        cases.push_back({2, 13, 8, 64, 3, precision, 100});            // K = 100: element loads in fp16/bf16
        cases.push_back({2, 13, 8, 64, 2, precision, 13});             // K = 13: element loads
        cases.push_back({2, 13, 8, 64, 3, precision, 1});              // K = 1
        cases.push_back({3, 7, 4, 25, 3, precision});                  // Dh = 25, K = 100: element stores
        cases.push_back({2, 13, 3, 5, 1, precision, 7});               // tiny everything
        cases.push_back({2, 33, 8, 64, 3, precision, 0, true, 8});     // strided x, still 16-byte aligned
        cases.push_back({2, 33, 8, 64, 3, precision, 0, true, 3});     // strided x, misaligned rows
        cases.push_back({2, 33, 8, 64, 3, precision, 0, true, 0, 1});  // misaligned buffers
    }
    return cases;
}

template <typename T>
void check_projection(const Case& c) {
    const HeadProjectionParams p = c.params();
    const int64_t rows = p.rows();
    const int64_t cols = p.cols();
    const int64_t x_elems = (rows - 1) * p.x_stride() + p.in_features;
    const int64_t out_elems = rows * p.group_cols();
    const std::vector<float> x = test::round_to<T>(test::random_vector(static_cast<size_t>(x_elems), 51));
    const std::vector<float> w = test::round_to<T>(test::random_vector(static_cast<size_t>(cols * p.in_features), 52));
    const std::vector<float> bias = test::round_to<T>(test::random_vector(static_cast<size_t>(cols), 53));
    std::vector<std::vector<float>> expected(c.groups, std::vector<float>(static_cast<size_t>(out_elems)));
    HeadOutputs<float> expected_outputs;
    for (int g = 0; g < c.groups; ++g) {
        expected_outputs.group[g] = expected[g].data();
    }
    cpu::fused_qkv_projection(p, x.data(), w.data(), c.bias ? bias.data() : nullptr, expected_outputs);

    test::CudaStream stream;
    test::DeviceBuffer<T> x_dev(x.size(), c.misalign);
    test::DeviceBuffer<T> w_dev(w.size(), c.misalign);
    test::DeviceBuffer<T> bias_dev(bias.size(), c.misalign);
    std::vector<test::DeviceBuffer<T>> out_dev;
    HeadOutputs<T> outputs;
    for (int g = 0; g < c.groups; ++g) {
        out_dev.emplace_back(static_cast<size_t>(out_elems), c.misalign);
        out_dev.back().poison_nan();
        outputs.group[g] = out_dev.back().data();
    }
    x_dev.upload(test::from_float<T>(x));
    w_dev.upload(test::from_float<T>(w));
    bias_dev.upload(test::from_float<T>(bias));
    cuda::fused_qkv_projection(p, x_dev.data(), w_dev.data(), c.bias ? bias_dev.data() : nullptr, outputs,
                               stream.get());
    stream.synchronize();

    // fp32: K products summed in another order than OpenBLAS; the error grows with K, so atol scales with K.
    // fp16/bf16: exact products and float sums on tensor cores, then the output rounded to the element type
    // (2^-9 relative in bf16); outputs are sums of K terms of size ~1/3, so atol covers rounding near zero.
    const double k = p.in_features;
    const test::Tolerance tol =
        c.precision == Precision::kFp32 ? test::Tolerance{1e-10, 2e-7 * k, 1e-5} : test::Tolerance{1e-4, 1e-2, 1e-2};
    for (int g = 0; g < c.groups; ++g) {
        EXPECT_TRUE(test::all_close(test::to_float(out_dev[g].download()), expected[g], tol,
                                    {p.batch, p.num_heads, p.seq_len, p.head_dim}))
            << "output group " << g;
        EXPECT_TRUE(out_dev[g].check_guards()) << "output group " << g;
    }
    EXPECT_TRUE(x_dev.check_guards());
    EXPECT_TRUE(w_dev.check_guards());
}

class QkvProjectionGpuTest : public ::testing::TestWithParam<Case> {};

TEST_P(QkvProjectionGpuTest, MatchesReference) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    test::with_element_type(GetParam().precision,
                            [&](auto element) { check_projection<decltype(element)>(GetParam()); });
}

INSTANTIATE_TEST_SUITE_P(Grid, QkvProjectionGpuTest, ::testing::ValuesIn(grid_cases()), test::case_name<Case>);
INSTANTIATE_TEST_SUITE_P(Edges, QkvProjectionGpuTest, ::testing::ValuesIn(edge_cases()), test::case_name<Case>);

}  // namespace
}  // namespace vqa

// CUDA fused attention against the CPU reference (cpu::attention): lengths that are not multiples of the tiles
// (query tile 16, key tile 32), Lq != Lk both ways, 1/8/16 heads, Dh 32/64/128 and the runtime-size fallback,
// key padding masks with fully masked batches under both rules, attention maps on and off, and layouts: dense
// head-major, column slices of packed projections with heads-merged output, misaligned pointers.
#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/attention.h"
#include "kernels/fused_attention.h"
#include "tests/kernels/gpu_case.h"
#include "tests/kernels/test_util.h"

namespace vqa {
namespace {

using test::MaskKind;
using test::Precision;

enum class Layout {
    kHeadMajor,   // q, k, v, o dense [B, H, L, Dh]
    kPacked,      // q [B, Lq, H·Dh]; k, v column slices of one [B, Lk, 2·H·Dh] buffer; o [B, Lq, H·Dh]
    kMisaligned,  // head-major, every buffer one element off 16-byte alignment (element loads)
};

struct Case {
    int batch = 1;      // B
    int heads = 1;      // H
    int q_len = 1;      // Lq
    int kv_len = 1;     // Lk
    int head_dim = 64;  // Dh
    Precision precision = Precision::kFp32;
    MaskKind mask = MaskKind::kNone;
    cpu::MaskedRow rule = cpu::MaskedRow::kZero;
    Layout layout = Layout::kHeadMajor;
    bool with_probs = true;
};

// B1_H8_Lq14_Lk100_Dh64_fp16_maskfull_uniform_packed_noprobs
std::string case_string(const Case& c) {
    std::string name = "B" + std::to_string(c.batch) + "_H" + std::to_string(c.heads) + "_Lq" +
                       std::to_string(c.q_len) + "_Lk" + std::to_string(c.kv_len) + "_Dh" + std::to_string(c.head_dim) +
                       "_" + test::precision_name(c.precision) + test::mask_suffix(c.mask);
    name += c.rule == cpu::MaskedRow::kUniform ? "_uniform" : "";
    name += c.layout == Layout::kPacked ? "_packed" : (c.layout == Layout::kMisaligned ? "_misaligned" : "");
    name += c.with_probs ? "" : "_noprobs";
    return name;
}
void PrintTo(const Case& c, std::ostream* out) {
    *out << case_string(c);
}

constexpr int kLengths[][2] = {{1, 1}, {14, 14}, {13, 100}, {100, 14}, {33, 257}, {257, 33}, {100, 100}};

std::vector<Case> grid_cases() {
    std::vector<Case> cases;
    for (const auto& lengths : kLengths) {
        for (const int head_dim : {32, 64, 128}) {
            for (const Precision precision : test::kPrecisions) {
                cases.push_back({2, 8, lengths[0], lengths[1], head_dim, precision, MaskKind::kWithFullyMasked});
            }
        }
    }
    return cases;
}

std::vector<Case> variant_cases() {
    std::vector<Case> cases;
    for (const Precision precision : test::kPrecisions) {
        for (const int heads : {1, 16}) {
            cases.push_back({3, heads, 14, 100, 64, precision, MaskKind::kPartial});
            cases.push_back({3, heads, 100, 14, 64, precision, MaskKind::kNone});
        }
        cases.push_back({1, 8, 14, 100, 64, precision, MaskKind::kNone});
        cases.push_back({1, 8, 14, 14, 64, precision, MaskKind::kWithFullyMasked});  // the only batch fully masked
        cases.push_back({64, 8, 100, 100, 64, precision, MaskKind::kWithFullyMasked});
        cases.push_back({256, 8, 14, 14, 64, precision, MaskKind::kPartial});
        // The fully masked row rule kUniform: P = 1/Lk, O = mean of V.
        cases.push_back({2, 8, 14, 100, 64, precision, MaskKind::kWithFullyMasked, cpu::MaskedRow::kUniform});
        cases.push_back({2, 8, 33, 14, 32, precision, MaskKind::kWithFullyMasked, cpu::MaskedRow::kUniform});
        // Runtime-size fallback: odd and non-power-of-two head dims, and the largest one.
        for (const int head_dim : {5, 40, 80, 256}) {
            cases.push_back({2, 4, 13, 33, head_dim, precision, MaskKind::kWithFullyMasked});
        }
        // Layouts.
        for (const Layout layout : {Layout::kPacked, Layout::kMisaligned}) {
            cases.push_back({2, 8, 14, 100, 64, precision, MaskKind::kWithFullyMasked, cpu::MaskedRow::kZero, layout});
            cases.push_back({3, 8, 100, 14, 128, precision, MaskKind::kPartial, cpu::MaskedRow::kZero, layout});
        }
        // Without attention maps.
        cases.push_back({2, 8, 14, 100, 64, precision, MaskKind::kWithFullyMasked, cpu::MaskedRow::kZero,
                         Layout::kHeadMajor, false});
        cases.push_back({2, 8, 100, 33, 128, precision, MaskKind::kWithFullyMasked, cpu::MaskedRow::kUniform,
                         Layout::kPacked, false});
    }
    return cases;
}

// Buffers and strides of one case, in elements.
struct Tensors {
    cpu::AttentionParams params;
    size_t q_elems = 0;
    size_t kv_elems = 0;  // k and v share one buffer when packed; else each has kv_elems
    size_t o_elems = 0;
    int64_t v_offset = 0;  // where v starts inside the packed buffer
};

Tensors describe(const Case& c) {
    Tensors t;
    cpu::AttentionParams& p = t.params;
    p.batch = c.batch;
    p.heads = c.heads;
    p.q_len = c.q_len;
    p.kv_len = c.kv_len;
    p.head_dim = c.head_dim;
    p.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    p.masked_row = c.rule;
    const int64_t hd = int64_t{c.heads} * c.head_dim;
    t.q_elems = static_cast<size_t>(c.batch * c.q_len * hd);
    t.o_elems = t.q_elems;
    if (c.layout == Layout::kPacked) {
        p.q = cpu::token_major_strides(c.q_len, c.head_dim, hd);
        p.k = cpu::token_major_strides(c.kv_len, c.head_dim, 2 * hd);
        p.v = p.k;
        p.o = cpu::token_major_strides(c.q_len, c.head_dim, hd);
        t.kv_elems = static_cast<size_t>(c.batch * c.kv_len * 2 * hd);
        t.v_offset = hd;
    } else {
        p.q = cpu::head_major_strides(c.heads, c.q_len, c.head_dim);
        p.k = cpu::head_major_strides(c.heads, c.kv_len, c.head_dim);
        p.v = p.k;
        p.o = p.q;
        t.kv_elems = static_cast<size_t>(c.batch * c.kv_len * hd);
    }
    return t;
}

template <typename T>
void check_fused_attention(const Case& c) {
    const Tensors t = describe(c);
    const cpu::AttentionParams& p = t.params;
    const bool packed = c.layout == Layout::kPacked;
    const size_t misalign = c.layout == Layout::kMisaligned ? 1 : 0;
    // Q in [-2, 2) so that some rows are peaked, not all close to uniform.
    const std::vector<float> q = test::round_to<T>(test::random_vector(t.q_elems, 41, -2.0f, 2.0f));
    const std::vector<float> k = test::round_to<T>(test::random_vector(t.kv_elems, 42));
    const std::vector<float> v = packed ? std::vector<float>{} : test::round_to<T>(test::random_vector(t.kv_elems, 43));
    const std::vector<uint8_t> mask = test::make_key_mask(c.batch, c.kv_len, c.mask, 44);
    const uint8_t* mask_host = mask.empty() ? nullptr : mask.data();
    const float* v_host = packed ? k.data() + t.v_offset : v.data();
    const size_t probs_elems = static_cast<size_t>(p.batch * p.heads * p.q_len * p.kv_len);
    std::vector<float> expected_o(t.o_elems);
    std::vector<float> expected_probs(probs_elems);
    cpu::attention(p, q.data(), k.data(), v_host, mask_host, expected_o.data(), expected_probs.data());

    test::CudaStream stream;
    test::DeviceBuffer<T> q_dev(q.size(), misalign);
    test::DeviceBuffer<T> k_dev(k.size(), misalign);
    test::DeviceBuffer<T> v_dev(packed ? 1 : v.size(), misalign);
    test::DeviceBuffer<T> o_dev(t.o_elems, misalign);
    test::DeviceBuffer<float> probs_dev(probs_elems);
    test::DeviceBuffer<uint8_t> mask_dev(std::max<size_t>(mask.size(), 1));
    q_dev.upload(test::from_float<T>(q));
    k_dev.upload(test::from_float<T>(k));
    if (!packed) {
        v_dev.upload(test::from_float<T>(v));
    }
    if (!mask.empty()) {
        mask_dev.upload(mask);
    }
    o_dev.poison_nan();
    probs_dev.poison_nan();
    const T* v_ptr = packed ? k_dev.data() + t.v_offset : v_dev.data();
    cuda::fused_attention(p, q_dev.data(), k_dev.data(), v_ptr, mask.empty() ? nullptr : mask_dev.data(), o_dev.data(),
                          c.with_probs ? probs_dev.data() : nullptr, stream.get());
    stream.synchronize();

    // fp32: dot products and exponentials in another order, a few ulps. fp16/bf16: the kernel computes in float
    // from the same rounded inputs as the reference, so only the output rounding (2^-9 relative in bf16) differs.
    const test::Tolerance o_tol =
        c.precision == Precision::kFp32 ? test::Tolerance{1e-9, 1e-5, 1e-5} : test::Tolerance{1e-4, 2e-3, 1e-2};
    const std::vector<int64_t> o_shape = packed ? std::vector<int64_t>{p.batch, p.q_len, p.heads, p.head_dim}
                                                : std::vector<int64_t>{p.batch, p.heads, p.q_len, p.head_dim};
    EXPECT_TRUE(test::all_close(test::to_float(o_dev.download()), expected_o, o_tol, o_shape)) << "output O";
    if (c.with_probs) {
        // P is float in every precision and computed in float from the same inputs: fp32 tolerance throughout.
        EXPECT_TRUE(test::all_close(probs_dev.download(), expected_probs, test::Tolerance{1e-9, 1e-6, 1e-5},
                                    {p.batch, p.heads, p.q_len, p.kv_len}))
            << "attention probabilities P";
    } else {
        const std::vector<float> untouched = probs_dev.download();
        EXPECT_TRUE(std::isnan(untouched.front()) && std::isnan(untouched.back())) << "P written though not asked";
    }
    EXPECT_TRUE(q_dev.check_guards());
    EXPECT_TRUE(k_dev.check_guards());
    EXPECT_TRUE(v_dev.check_guards());
    EXPECT_TRUE(o_dev.check_guards());
    EXPECT_TRUE(probs_dev.check_guards());
}

class FusedAttentionGpuTest : public ::testing::TestWithParam<Case> {};

TEST_P(FusedAttentionGpuTest, MatchesReference) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    test::with_element_type(GetParam().precision,
                            [&](auto element) { check_fused_attention<decltype(element)>(GetParam()); });
}

INSTANTIATE_TEST_SUITE_P(Grid, FusedAttentionGpuTest, ::testing::ValuesIn(grid_cases()), test::case_name<Case>);
INSTANTIATE_TEST_SUITE_P(Variants, FusedAttentionGpuTest, ::testing::ValuesIn(variant_cases()), test::case_name<Case>);

}  // namespace
}  // namespace vqa

// CPU multi-head attention against a double-precision naive reference: Lq ≠ Lk, 1/2/8 heads, Dh 5/16/64, three
// layouts (dense token-major, column slices of fused projection buffers, head-major), no mask, partly masked
// and fully masked rows under both rules.
#include "kernels/cpu/attention.h"

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

// Two float GEMMs around a float softmax, against double: errors of a few 1e-7 on values of order 1
// (rtol 1e-5, atol 1e-6, the test default).
constexpr test::Tolerance kAttentionTolerance{};

struct Shape {
    int64_t B, H, Lq, Lk, Dh;
};

enum class Layout {
    kTokenMajor,   // q [B, Lq, H·Dh], k/v [B, Lk, H·Dh], dense
    kFusedSlices,  // q: columns 0..d of [B, Lq, 3d]; k, v: columns d..2d and 2d..3d of [B, Lk, 3d]
    kHeadMajor,    // [B, H, L, Dh] everywhere, o included
};

enum class MaskKind { kNone, kPartial, kWithFullyMasked };

using AttentionParam = std::tuple<Shape, Layout, MaskKind, MaskedRow>;

std::string attention_case_name(const testing::TestParamInfo<AttentionParam>& info) {
    const auto& [s, layout, mask, rule] = info.param;
    const char* layout_name = layout == Layout::kTokenMajor    ? "tokens"
                              : layout == Layout::kFusedSlices ? "fused"
                                                               : "heads";
    const char* mask_name = mask == MaskKind::kNone ? "nomask" : mask == MaskKind::kPartial ? "partial" : "fullrows";
    return "B" + std::to_string(s.B) + "_H" + std::to_string(s.H) + "_Lq" + std::to_string(s.Lq) + "_Lk" +
           std::to_string(s.Lk) + "_Dh" + std::to_string(s.Dh) + "_" + layout_name + "_" + mask_name +
           (rule == MaskedRow::kZero ? "_zero" : "_uniform");
}

// A [B, H, L, Dh] view: the buffer and its strides.
struct View {
    std::vector<float> data;
    HeadStrides strides;
    float at(int64_t b, int64_t h, int64_t i, int64_t e) const {
        return data[b * strides.batch + h * strides.head + i * strides.row + e];
    }
};

View make_view(const Shape& s, int64_t L, Layout layout, int64_t slice, uint64_t seed) {
    const int64_t d = s.H * s.Dh;
    View v;
    if (layout == Layout::kHeadMajor) {
        v.strides = head_major_strides(s.H, L, s.Dh);
        v.data = random_vector(s.B * d * L, seed);
    } else if (layout == Layout::kTokenMajor) {
        v.strides = token_major_strides(L, s.Dh, d);
        v.data = random_vector(s.B * d * L, seed);
    } else {
        v.strides = token_major_strides(L, s.Dh, 3 * d);
        v.data = random_vector(s.B * 3 * d * L, seed);
        v.data.erase(v.data.begin(), v.data.begin() + slice * d);  // the view starts at column slice·d
    }
    return v;
}

std::vector<uint8_t> make_mask(const Shape& s, MaskKind kind) {
    std::vector<uint8_t> mask(s.B * s.Lk);
    const std::vector<float> u = random_vector(mask.size(), 7, 0.0f, 1.0f);
    for (size_t i = 0; i < mask.size(); ++i) {
        mask[i] = u[i] < 0.3f ? 0 : 1;
    }
    for (int64_t b = 0; b < s.B; ++b) {
        mask[b * s.Lk] = 1;  // keep a valid key; batch element 1 is made fully masked below
    }
    if (kind == MaskKind::kWithFullyMasked) {
        std::fill(mask.begin() + (s.B > 1 ? s.Lk : 0), mask.begin() + (s.B > 1 ? 2 : 1) * s.Lk, uint8_t{0});
    }
    return mask;
}

class AttentionTest : public testing::TestWithParam<AttentionParam> {};

TEST_P(AttentionTest, MatchesNaiveReference) {
    const auto& [s, layout, mask_kind, rule] = GetParam();
    const View q = make_view(s, s.Lq, layout, 0, 1);
    const View k = make_view(s, s.Lk, layout, 1, 2);
    const View v = make_view(s, s.Lk, layout, 2, 3);
    const std::vector<uint8_t> mask = make_mask(s, mask_kind);
    const uint8_t* mask_ptr = mask_kind == MaskKind::kNone ? nullptr : mask.data();

    AttentionParams params;
    params.batch = s.B;
    params.heads = s.H;
    params.q_len = s.Lq;
    params.kv_len = s.Lk;
    params.head_dim = s.Dh;
    params.q = q.strides;
    params.k = k.strides;
    params.v = v.strides;
    params.o = layout == Layout::kHeadMajor ? head_major_strides(s.H, s.Lq, s.Dh)
                                            : token_major_strides(s.Lq, s.Dh, s.H * s.Dh);
    params.scale = 1.0f / std::sqrt(static_cast<float>(s.Dh));
    params.masked_row = rule;
    std::vector<float> o(s.B * s.Lq * s.H * s.Dh);
    std::vector<float> probs(s.B * s.H * s.Lq * s.Lk);
    test::poison_nan(o);
    test::poison_nan(probs);
    attention(params, q.data.data(), k.data.data(), v.data.data(), mask_ptr, o.data(), probs.data());

    std::vector<float> expected_o(o.size());
    std::vector<float> expected_p(probs.size());
    for (int64_t b = 0; b < s.B; ++b) {
        const uint8_t* m = mask_ptr != nullptr ? mask_ptr + b * s.Lk : nullptr;
        bool any_valid = false;
        for (int64_t j = 0; j < s.Lk; ++j) {
            any_valid = any_valid || m == nullptr || m[j];
        }
        for (int64_t h = 0; h < s.H; ++h) {
            for (int64_t i = 0; i < s.Lq; ++i) {
                std::vector<double> p(s.Lk, 0.0);
                double row_max = -INFINITY;
                for (int64_t j = 0; j < s.Lk; ++j) {
                    double dot = 0.0;
                    for (int64_t e = 0; e < s.Dh; ++e) {
                        dot += static_cast<double>(q.at(b, h, i, e)) * k.at(b, h, j, e);
                    }
                    p[j] = dot / std::sqrt(static_cast<double>(s.Dh));
                    if (m == nullptr || m[j]) {
                        row_max = std::max(row_max, p[j]);
                    }
                }
                double sum = 0.0;
                for (int64_t j = 0; j < s.Lk; ++j) {
                    p[j] = !any_valid ? (rule == MaskedRow::kUniform ? 1.0 : 0.0)
                                      : (m == nullptr || m[j] ? std::exp(p[j] - row_max) : 0.0);
                    sum += p[j];
                }
                const int64_t p_row = ((b * s.H + h) * s.Lq + i) * s.Lk;
                for (int64_t j = 0; j < s.Lk; ++j) {
                    p[j] = sum > 0.0 ? p[j] / sum : 0.0;
                    expected_p[p_row + j] = static_cast<float>(p[j]);
                }
                double row_sum = 0.0;
                for (int64_t j = 0; j < s.Lk; ++j) {
                    row_sum += probs[p_row + j];
                }
                EXPECT_NEAR(row_sum, any_valid || rule == MaskedRow::kUniform ? 1.0 : 0.0, 1e-5)
                    << "P row b=" << b << " h=" << h << " i=" << i;
                for (int64_t e = 0; e < s.Dh; ++e) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < s.Lk; ++j) {
                        acc += p[j] * v.at(b, h, j, e);
                    }
                    const int64_t o_index = b * params.o.batch + h * params.o.head + i * params.o.row + e;
                    expected_o[o_index] = static_cast<float>(acc);
                    if (!any_valid && rule == MaskedRow::kZero) {
                        EXPECT_EQ(o[o_index], 0.0f) << "fully masked row under kZero must give exact zeros";
                    }
                }
            }
        }
    }
    EXPECT_TRUE(all_close(probs, expected_p, kAttentionTolerance, {s.B, s.H, s.Lq, s.Lk}));
    EXPECT_TRUE(all_close(o, expected_o, kAttentionTolerance));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes,
    AttentionTest,
    testing::Combine(testing::Values(Shape{1, 1, 1, 1, 5},
                                     Shape{1, 1, 3, 7, 5},
                                     Shape{2, 2, 7, 33, 16},
                                     Shape{3, 8, 14, 100, 64},
                                     Shape{2, 8, 33, 31, 64},
                                     Shape{2, 2, 100, 2, 16},
                                     Shape{2, 2, 100, 65, 64}),  // above gemm_runs_single_threaded
                     testing::Values(Layout::kTokenMajor, Layout::kFusedSlices, Layout::kHeadMajor),
                     testing::Values(MaskKind::kNone, MaskKind::kPartial, MaskKind::kWithFullyMasked),
                     testing::Values(MaskedRow::kZero, MaskedRow::kUniform)),
    attention_case_name);

// Under kUniform a query with every key masked averages V over all keys (openvqa's −1e9 fill).
TEST(AttentionReference, UniformRuleGivesMeanOfV) {
    const int64_t H = 2, Lq = 3, Lk = 5, Dh = 4, d = H * Dh;
    const std::vector<float> q = random_vector(Lq * d, 11);
    const std::vector<float> k = random_vector(Lk * d, 12);
    const std::vector<float> v = random_vector(Lk * d, 13);
    const std::vector<uint8_t> mask(Lk, 0);
    AttentionParams params;
    params.batch = 1;
    params.heads = H;
    params.q_len = Lq;
    params.kv_len = Lk;
    params.head_dim = Dh;
    params.q = params.o = token_major_strides(Lq, Dh, d);
    params.k = params.v = token_major_strides(Lk, Dh, d);
    params.scale = 0.5f;
    params.masked_row = MaskedRow::kUniform;
    std::vector<float> o(Lq * d);
    std::vector<float> probs(H * Lq * Lk);
    test::poison_nan(o);
    attention(params, q.data(), k.data(), v.data(), mask.data(), o.data(), probs.data());
    std::vector<float> expected(Lq * d);
    for (int64_t i = 0; i < Lq; ++i) {
        for (int64_t c = 0; c < d; ++c) {
            double mean = 0.0;
            for (int64_t j = 0; j < Lk; ++j) {
                mean += v[j * d + c] / static_cast<double>(Lk);
            }
            expected[i * d + c] = static_cast<float>(mean);
        }
    }
    EXPECT_TRUE(all_close(o, expected, kAttentionTolerance, {Lq, d}));
}

TEST(AttentionReference, RejectsShortRowStrideAndMissingWorkspace) {
    std::vector<float> buf(64, 1.0f);
    AttentionParams params;
    params.batch = 1;
    params.heads = 1;
    params.q_len = 2;
    params.kv_len = 2;
    params.head_dim = 4;
    params.q = params.k = params.v = params.o = token_major_strides(2, 4, 3);
    EXPECT_THROW(attention(params, buf.data(), buf.data(), buf.data(), nullptr, buf.data() + 16, buf.data() + 32),
                 Error);
    params.q = params.k = params.v = params.o = token_major_strides(2, 4, 4);
    EXPECT_THROW(attention(params, buf.data(), buf.data(), buf.data(), nullptr, buf.data() + 16, nullptr), Error);
}

}  // namespace
}  // namespace vqa::cpu

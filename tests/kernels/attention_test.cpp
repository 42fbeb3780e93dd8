// CPU multi-head attention against a double-precision naive reference: Lq ≠ Lk, 1/2/8 heads, Dh 5/16/64, three
// layouts (dense token-major, column slices of fused projection buffers, head-major), no mask, partly masked
// and fully masked rows under both rules.
#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "tests/engine/engine_test_util.h"
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

// Packed sequences against the dense layout: the same sequences padded to Lq / Lk, with a key padding mask that
// hides the padding, must give the same O rows and the same P blocks. Both run the same float operations on the
// same values; only the BLAS kernel picked for a GEMM of another shape may sum in another order, a few ulps, hence
// rtol 1e-6 (and atol 1e-6 for the probabilities near 0). NaN never passes (all_close).
constexpr test::Tolerance kPackedTolerance{1e-12, 1e-6, 1e-6};

struct PackedCase {
    const char* name;
    int64_t H, Dh;
    std::vector<int64_t> q_counts;     // queries of each sequence (0 allowed)
    std::vector<int64_t> run_lengths;  // runs of key rows, one after another in k and v
    std::vector<int64_t> run_of;       // the run each sequence attends to (two sequences may share one)
    // A run whose keys are all masked, or -1. Its length is Lk: dense padding keys count under kUniform (1/Lk),
    // packed ones do not exist (1/kv_count), so only a run kept whole compares under both rules.
    int64_t masked_run;
};

using PackedParam = std::tuple<PackedCase, bool, MaskedRow>;  // case, with a mask, rule

std::string packed_case_name(const testing::TestParamInfo<PackedParam>& info) {
    const auto& [c, with_mask, rule] = info.param;
    return std::string(c.name) + (with_mask ? "_mask" : "_nomask") + (rule == MaskedRow::kZero ? "_zero" : "_uniform");
}

class PackedAttentionTest : public testing::TestWithParam<PackedParam> {};

TEST_P(PackedAttentionTest, MatchesDenseWithPaddingMask) {
    const auto& [c, with_mask, rule] = GetParam();
    const int64_t B = static_cast<int64_t>(c.q_counts.size());
    const int64_t d = c.H * c.Dh;
    const int64_t Lq = *std::max_element(c.q_counts.begin(), c.q_counts.end());
    const int64_t Lk = *std::max_element(c.run_lengths.begin(), c.run_lengths.end());

    // Packed rows: queries of sequence b at q_offsets[b]; key runs one after another.
    std::vector<int32_t> q_offsets{0};
    for (const int64_t count : c.q_counts) {
        q_offsets.push_back(static_cast<int32_t>(q_offsets.back() + count));
    }
    std::vector<int32_t> run_start{0};
    for (const int64_t length : c.run_lengths) {
        run_start.push_back(static_cast<int32_t>(run_start.back() + length));
    }
    std::vector<int32_t> kv_start;
    std::vector<int32_t> kv_count;
    for (const int64_t run : c.run_of) {
        kv_start.push_back(run_start[run]);
        kv_count.push_back(static_cast<int32_t>(c.run_lengths[run]));
    }
    const int64_t q_rows = q_offsets.back();
    const int64_t kv_rows = run_start.back();
    const std::vector<float> k_packed = random_vector(kv_rows * d, 22);
    const std::vector<float> v_packed = random_vector(kv_rows * d, 23);
    std::vector<uint8_t> mask_packed(kv_rows);
    const std::vector<float> u = random_vector(mask_packed.size(), 24, 0.0f, 1.0f);
    for (size_t run = 0; run < c.run_lengths.size(); ++run) {
        for (int64_t j = 0; j < c.run_lengths[run]; ++j) {
            const int64_t row = run_start[run] + j;
            mask_packed[row] = static_cast<int64_t>(run) == c.masked_run ? 0 : (j == 0 || u[row] >= 0.3f);
        }
    }

    // Dense: [B, L, d] with finite garbage in the padding rows, which the padding mask must hide.
    const std::vector<float> q_dense = random_vector(B * Lq * d, 21);
    std::vector<float> k_dense = random_vector(B * Lk * d, 25);
    std::vector<float> v_dense = random_vector(B * Lk * d, 26);
    std::vector<uint8_t> mask_dense(B * Lk, 0);
    std::vector<float> q_packed(q_rows * d);
    for (int64_t b = 0; b < B; ++b) {
        std::copy_n(q_dense.begin() + b * Lq * d, c.q_counts[b] * d, q_packed.begin() + q_offsets[b] * d);
        for (int64_t j = 0; j < kv_count[b]; ++j) {
            const int64_t row = kv_start[b] + j;
            std::copy_n(k_packed.begin() + row * d, d, k_dense.begin() + (b * Lk + j) * d);
            std::copy_n(v_packed.begin() + row * d, d, v_dense.begin() + (b * Lk + j) * d);
            mask_dense[b * Lk + j] = with_mask ? mask_packed[row] : 1;
        }
    }

    AttentionParams dense;
    dense.batch = B;
    dense.heads = c.H;
    dense.q_len = Lq;
    dense.kv_len = Lk;
    dense.head_dim = c.Dh;
    dense.q = dense.o = token_major_strides(Lq, c.Dh, d);
    dense.k = dense.v = token_major_strides(Lk, c.Dh, d);
    dense.scale = 1.0f / std::sqrt(static_cast<float>(c.Dh));
    dense.masked_row = rule;
    std::vector<float> o_dense(B * Lq * d);
    std::vector<float> p_dense(B * c.H * Lq * Lk);
    attention(dense, q_dense.data(), k_dense.data(), v_dense.data(), mask_dense.data(), o_dense.data(), p_dense.data());

    AttentionParams packed = dense;
    // Batch strides are unused when packed: 0 makes any use of them read sequence 0's rows and fail.
    packed.q = packed.o = packed.k = packed.v = HeadStrides{0, c.Dh, d};
    packed.q_offsets = q_offsets.data();
    packed.kv_start = kv_start.data();
    packed.kv_count = kv_count.data();
    std::vector<float> o_packed(q_rows * d);
    std::vector<float> p_packed(p_dense.size());
    test::poison_nan(o_packed);
    test::poison_nan(p_packed);
    attention(packed, q_packed.data(), k_packed.data(), v_packed.data(), with_mask ? mask_packed.data() : nullptr,
              o_packed.data(), p_packed.data());

    // The valid rows of O and the top-left q_count × kv_count block of each P[b, h].
    std::vector<float> o_expected;
    std::vector<float> p_found;
    std::vector<float> p_expected;
    for (int64_t b = 0; b < B; ++b) {
        o_expected.insert(o_expected.end(), o_dense.begin() + b * Lq * d,
                          o_dense.begin() + (b * Lq + c.q_counts[b]) * d);
        for (int64_t h = 0; h < c.H; ++h) {
            for (int64_t i = 0; i < c.q_counts[b]; ++i) {
                const int64_t row = ((b * c.H + h) * Lq + i) * Lk;
                p_found.insert(p_found.end(), p_packed.begin() + row, p_packed.begin() + row + kv_count[b]);
                p_expected.insert(p_expected.end(), p_dense.begin() + row, p_dense.begin() + row + kv_count[b]);
            }
        }
    }
    EXPECT_TRUE(all_close(o_packed, o_expected, kPackedTolerance, {q_rows, c.H, c.Dh})) << "O rows";
    EXPECT_TRUE(all_close(p_found, p_expected, kPackedTolerance)) << "P blocks";
    for (int64_t b = 0; b < B && with_mask && rule == MaskedRow::kZero; ++b) {
        if (c.run_of[b] == c.masked_run) {
            EXPECT_TRUE(std::all_of(o_packed.begin() + q_offsets[b] * d, o_packed.begin() + q_offsets[b + 1] * d,
                                    [](float x) { return x == 0.0f; }))
                << "sequence " << b << " has every key masked: exact zeros under kZero";
        }
    }
}

INSTANTIATE_TEST_SUITE_P(
    Packed,
    PackedAttentionTest,
    testing::Combine(testing::Values(
                         // Odd sizes; sequences 0 and 1 share run 0 (at the largest key count), sequence 1 has one
                         // query, sequence 2 the most; run 2 is fully masked.
                         PackedCase{"H2_Dh5", 2, 5, {7, 1, 14, 3}, {33, 9, 33}, {0, 0, 1, 2}, 2},
                         // A sequence without queries, one with a single key, runs used out of order.
                         PackedCase{"H8_Dh64", 8, 64, {14, 0, 13, 1, 9}, {100, 37, 1, 100}, {1, 0, 0, 2, 3}, 3},
                         // Above gemm_runs_single_threaded: one (b, h) pair at a time.
                         PackedCase{"H2_Dh64_large", 2, 64, {100, 37, 5}, {65, 20, 65}, {0, 1, 2}, 2}),
                     testing::Bool(),
                     testing::Values(MaskedRow::kZero, MaskedRow::kUniform)),
    packed_case_name);

TEST(AttentionReference, RejectsBadPackedOffsets) {
    std::vector<float> buf(256, 1.0f);
    AttentionParams params;
    params.batch = 2;
    params.heads = 1;
    params.q_len = 3;
    params.kv_len = 4;
    params.head_dim = 4;
    params.q = params.k = params.v = params.o = HeadStrides{0, 4, 4};
    std::vector<int32_t> q_offsets{0, 3, 5};
    std::vector<int32_t> kv_start{0, 2};
    std::vector<int32_t> kv_count{4, 2};
    params.q_offsets = q_offsets.data();
    params.kv_start = kv_start.data();
    params.kv_count = kv_count.data();
    const auto run = [&] {
        attention(params, buf.data(), buf.data() + 32, buf.data() + 64, nullptr, buf.data() + 96, buf.data() + 128);
    };
    EXPECT_NO_THROW(run());  // the valid baseline that each change below breaks

    q_offsets = {1, 3, 5};
    EXPECT_VQA_ERROR(run(), kInvalidArgument, "q_offsets[0] = 0");
    q_offsets = {0, 4, 5};
    EXPECT_VQA_ERROR(run(), kInvalidArgument, "packed sequence 0 has 4 queries");
    q_offsets = {0, 3, 2};
    EXPECT_VQA_ERROR(run(), kInvalidArgument, "packed sequence 1 has -1 queries");
    q_offsets = {0, 3, 5};
    kv_count = {0, 2};
    EXPECT_VQA_ERROR(run(), kInvalidArgument, "packed sequence 0 has 3 queries and 0 keys");
    kv_count = {4, 5};
    EXPECT_VQA_ERROR(run(), kInvalidArgument, "packed sequence 1 has 2 queries and 5 keys");
    kv_count = {4, 2};
    kv_start = {0, -1};
    EXPECT_VQA_ERROR(run(), kInvalidArgument, "from row -1");
    kv_start = {0, 2};
    params.kv_count = nullptr;
    EXPECT_VQA_ERROR(run(), kInvalidArgument, "need kv_start, kv_count");
    params.kv_count = kv_count.data();
    params.kv_start = nullptr;
    EXPECT_VQA_ERROR(run(), kInvalidArgument, "need kv_start, kv_count");
}

}  // namespace
}  // namespace vqa::cpu

// CUDA fused attention against the CPU reference (cpu::attention): lengths that are not multiples of the tiles
// (query tile 16, key tile 32), Lq != Lk both ways, 1/8/16 heads, Dh 32/64/128 and the runtime-size fallback,
// key padding masks with fully masked batches under both rules, attention maps on and off, and layouts: dense
// head-major, column slices of packed projections with heads-merged output, misaligned pointers.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
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

// Packed (variable-length) sequences: q [total query rows, H·Dh], k and v column slices of one
// [total key rows, 2·H·Dh] buffer, o [total query rows, H·Dh], the mask [total key rows]; the offsets on the device.
struct PackedSequencesCase {
    const char* name = "";
    int heads = 1;
    int head_dim = 64;
    std::vector<int> q_counts;     // queries of each sequence
    std::vector<int> run_lengths;  // runs of key rows, one after another
    std::vector<int> run_of;       // the run each sequence attends to (two sequences may share one)
    int masked_run = -1;           // a run whose keys are all masked, or -1
    Precision precision = Precision::kFp32;
    cpu::MaskedRow rule = cpu::MaskedRow::kZero;
    bool with_probs = true;
};

// q7_1_33_3_Dh64_fp16_uniform_noprobs: the query counts, then Dh
std::string case_string(const PackedSequencesCase& c) {
    return std::string(c.name) + "_" + test::precision_name(c.precision) +
           (c.rule == cpu::MaskedRow::kUniform ? "_uniform" : "") + (c.with_probs ? "" : "_noprobs");
}
void PrintTo(const PackedSequencesCase& c, std::ostream* out) {
    *out << case_string(c);
}

std::vector<PackedSequencesCase> packed_sequence_cases() {
    // Odd counts around the tiles (query tile 16, key tile 32); sequences sharing a run; a sequence of one query,
    // one without queries, one with a single key; a fully masked run, shorter than Lk where possible (kUniform
    // then averages over that run's keys only).
    const PackedSequencesCase shapes[] = {
        {"q7_1_33_3_Dh64", 8, 64, {7, 1, 33, 3}, {33, 9, 20}, {0, 0, 1, 2}, 2},
        {"q14_0_13_1_17_Dh32", 4, 32, {14, 0, 13, 1, 17}, {100, 37, 1, 65}, {1, 0, 0, 2, 3}, 3},
        {"q16_15_17_Dh128", 2, 128, {16, 15, 17}, {32, 31, 33}, {0, 1, 2}, 0},
        {"q5_12_Dh5", 3, 5, {5, 12}, {14, 3}, {1, 0}, 1},           // runtime-size fallback, element loads
        {"q9_2_9_Dh80", 2, 80, {9, 2, 9}, {40, 7}, {0, 1, 0}, -1},  // no mask
    };
    std::vector<PackedSequencesCase> cases;
    for (const Precision precision : test::kPrecisions) {
        for (const cpu::MaskedRow rule : {cpu::MaskedRow::kZero, cpu::MaskedRow::kUniform}) {
            for (const bool with_probs : {true, false}) {
                for (PackedSequencesCase c : shapes) {
                    c.precision = precision;
                    c.rule = rule;
                    c.with_probs = with_probs;
                    cases.push_back(c);
                }
            }
        }
    }
    return cases;
}

// Row offsets of a packed case, as cpu::AttentionParams wants them.
struct PackedOffsets {
    std::vector<int32_t> q_offsets{0};
    std::vector<int32_t> kv_start;
    std::vector<int32_t> kv_count;
    std::vector<int32_t> run_start{0};
};

PackedOffsets packed_offsets(const PackedSequencesCase& c) {
    PackedOffsets r;
    for (const int count : c.q_counts) {
        r.q_offsets.push_back(r.q_offsets.back() + count);
    }
    for (const int length : c.run_lengths) {
        r.run_start.push_back(r.run_start.back() + length);
    }
    for (const int run : c.run_of) {
        r.kv_start.push_back(r.run_start[static_cast<size_t>(run)]);
        r.kv_count.push_back(c.run_lengths[static_cast<size_t>(run)]);
    }
    return r;
}

// P entries of the top-left q_count × kv_count block of every P[b, h] (dense [B, H, Lq, Lk]), and whether every
// entry outside those blocks is still NaN (the kernel must not write them).
struct ProbBlocks {
    std::vector<float> inside;
    bool outside_untouched = true;
};

ProbBlocks prob_blocks(const std::vector<float>& probs,
                       int heads,
                       int q_len,
                       int kv_len,
                       const std::vector<int>& q_counts,
                       const std::vector<int32_t>& kv_count) {
    ProbBlocks blocks;
    for (size_t b = 0; b < q_counts.size(); ++b) {
        for (int h = 0; h < heads; ++h) {
            for (int i = 0; i < q_len; ++i) {
                for (int j = 0; j < kv_len; ++j) {
                    const float value = probs[((b * heads + h) * q_len + i) * static_cast<size_t>(kv_len) + j];
                    if (i < q_counts[b] && j < kv_count[b]) {
                        blocks.inside.push_back(value);
                    } else {
                        blocks.outside_untouched = blocks.outside_untouched && std::isnan(value);
                    }
                }
            }
        }
    }
    return blocks;
}

template <typename T>
void check_packed_sequences(const PackedSequencesCase& c) {
    const PackedOffsets offsets = packed_offsets(c);
    const int batch = static_cast<int>(c.q_counts.size());
    const int q_len = *std::max_element(c.q_counts.begin(), c.q_counts.end());
    const int kv_len = *std::max_element(offsets.kv_count.begin(), offsets.kv_count.end());
    const int64_t hd = int64_t{c.heads} * c.head_dim;
    const int64_t q_rows = offsets.q_offsets.back();
    const int64_t kv_rows = offsets.run_start.back();

    cpu::AttentionParams p;
    p.batch = batch;
    p.heads = c.heads;
    p.q_len = q_len;
    p.kv_len = kv_len;
    p.head_dim = c.head_dim;
    p.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    p.masked_row = c.rule;
    // Batch strides are unused when packed: 0 makes any use of them read sequence 0's rows and fail.
    p.q = p.o = cpu::HeadStrides{0, c.head_dim, hd};
    p.k = p.v = cpu::HeadStrides{0, c.head_dim, 2 * hd};

    const std::vector<float> q =
        test::round_to<T>(test::random_vector(static_cast<size_t>(q_rows * hd), 61, -2.0f, 2.0f));
    const std::vector<float> kv = test::round_to<T>(test::random_vector(static_cast<size_t>(kv_rows * 2 * hd), 62));
    std::vector<uint8_t> mask;
    if (c.masked_run >= 0) {
        const std::vector<float> u = test::random_vector(static_cast<size_t>(kv_rows), 63, 0.0f, 1.0f);
        mask.resize(static_cast<size_t>(kv_rows));
        for (size_t run = 0; run < c.run_lengths.size(); ++run) {
            for (int j = 0; j < c.run_lengths[run]; ++j) {
                const size_t row = static_cast<size_t>(offsets.run_start[run] + j);
                mask[row] = static_cast<int>(run) == c.masked_run ? 0 : (j == 0 || u[row] >= 0.33f);
            }
        }
    }
    const size_t probs_elems = static_cast<size_t>(batch) * c.heads * q_len * kv_len;
    std::vector<float> expected_o(static_cast<size_t>(q_rows * hd));
    std::vector<float> expected_probs(probs_elems);
    test::poison_nan(expected_probs);  // the reference leaves entries outside the blocks alone, as the kernel must
    cpu::AttentionParams host = p;
    host.q_offsets = offsets.q_offsets.data();
    host.kv_start = offsets.kv_start.data();
    host.kv_count = offsets.kv_count.data();
    cpu::attention(host, q.data(), kv.data(), kv.data() + hd, mask.empty() ? nullptr : mask.data(), expected_o.data(),
                   expected_probs.data());

    test::CudaStream stream;
    test::DeviceBuffer<T> q_dev(q.size());
    test::DeviceBuffer<T> kv_dev(kv.size());
    test::DeviceBuffer<T> o_dev(expected_o.size());
    test::DeviceBuffer<float> probs_dev(probs_elems);
    test::DeviceBuffer<uint8_t> mask_dev(std::max<size_t>(mask.size(), 1));
    test::DeviceBuffer<int32_t> q_offsets_dev(offsets.q_offsets.size());
    test::DeviceBuffer<int32_t> kv_start_dev(offsets.kv_start.size());
    test::DeviceBuffer<int32_t> kv_count_dev(offsets.kv_count.size());
    q_dev.upload(test::from_float<T>(q));
    kv_dev.upload(test::from_float<T>(kv));
    if (!mask.empty()) {
        mask_dev.upload(mask);
    }
    q_offsets_dev.upload(offsets.q_offsets);
    kv_start_dev.upload(offsets.kv_start);
    kv_count_dev.upload(offsets.kv_count);
    o_dev.poison_nan();
    probs_dev.poison_nan();
    p.q_offsets = q_offsets_dev.data();
    p.kv_start = kv_start_dev.data();
    p.kv_count = kv_count_dev.data();
    cuda::fused_attention(p, q_dev.data(), kv_dev.data(), kv_dev.data() + hd, mask.empty() ? nullptr : mask_dev.data(),
                          o_dev.data(), c.with_probs ? probs_dev.data() : nullptr, stream.get());
    stream.synchronize();

    // The tolerances of the dense cases above, for the same reasons.
    const test::Tolerance o_tol =
        c.precision == Precision::kFp32 ? test::Tolerance{1e-9, 1e-5, 1e-5} : test::Tolerance{1e-4, 2e-3, 1e-2};
    EXPECT_TRUE(test::all_close(test::to_float(o_dev.download()), expected_o, o_tol, {q_rows, c.heads, c.head_dim}))
        << "output O";
    const std::vector<float> probs = probs_dev.download();
    if (c.with_probs) {
        const ProbBlocks found = prob_blocks(probs, c.heads, q_len, kv_len, c.q_counts, offsets.kv_count);
        const ProbBlocks expected = prob_blocks(expected_probs, c.heads, q_len, kv_len, c.q_counts, offsets.kv_count);
        EXPECT_TRUE(test::all_close(found.inside, expected.inside, test::Tolerance{1e-9, 1e-6, 1e-5}))
            << "attention probabilities P, the sequences' blocks";
        EXPECT_TRUE(found.outside_untouched) << "P written outside a sequence's q_count × kv_count block";
    } else {
        EXPECT_TRUE(std::all_of(probs.begin(), probs.end(), [](float x) { return std::isnan(x); }))
            << "P written though not asked";
    }
    EXPECT_TRUE(q_dev.check_guards());
    EXPECT_TRUE(kv_dev.check_guards());
    EXPECT_TRUE(o_dev.check_guards());
    EXPECT_TRUE(probs_dev.check_guards());
}

class FusedAttentionPackedGpuTest : public ::testing::TestWithParam<PackedSequencesCase> {};

TEST_P(FusedAttentionPackedGpuTest, MatchesReference) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    test::with_element_type(GetParam().precision,
                            [&](auto element) { check_packed_sequences<decltype(element)>(GetParam()); });
}

INSTANTIATE_TEST_SUITE_P(PackedSequences,
                         FusedAttentionPackedGpuTest,
                         ::testing::ValuesIn(packed_sequence_cases()),
                         test::case_name<PackedSequencesCase>);

// Counts the host cannot check: the kernel clamps them (fused_attention.h). Sequence 0 claims 20 queries (Lq = 16)
// and 45 keys (Lk = 40): its first 16 rows attend to 40 keys and rows 16..19 stay unwritten; sequence 1 has no
// keys: zero O rows under either rule, no P entries; sequence 2 is ordinary.
TEST(FusedAttentionPackedGpu, ClampsCountsTheHostCannotCheck) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    constexpr int kHeads = 2, kHeadDim = 32, kQLen = 16, kKvLen = 40, kHd = kHeads * kHeadDim;
    const std::vector<int32_t> q_offsets{0, 20, 25, 30};
    const std::vector<int32_t> kv_start{0, 10, 50};
    const std::vector<int32_t> kv_count{45, 0, 7};
    const int64_t q_rows = 30;
    const int64_t kv_rows = 57;  // the clamped runs end at rows 40 and 57
    const std::vector<float> q = test::random_vector(q_rows * kHd, 71, -2.0f, 2.0f);
    const std::vector<float> k = test::random_vector(kv_rows * kHd, 72);
    const std::vector<float> v = test::random_vector(kv_rows * kHd, 73);

    for (const cpu::MaskedRow rule : {cpu::MaskedRow::kZero, cpu::MaskedRow::kUniform}) {
        cpu::AttentionParams p;
        p.batch = 3;
        p.heads = kHeads;
        p.q_len = kQLen;
        p.kv_len = kKvLen;
        p.head_dim = kHeadDim;
        p.scale = 0.25f;
        p.masked_row = rule;
        p.q = p.k = p.v = p.o = cpu::HeadStrides{0, kHeadDim, kHd};
        const size_t probs_elems = size_t{3} * kHeads * kQLen * kKvLen;

        // Reference: sequences 0 and 2 alone, with the clamped counts.
        const auto reference = [&](int32_t q_first, int32_t q_count, int32_t k_first, int32_t k_count) {
            cpu::AttentionParams one = p;
            one.batch = 1;
            const int32_t one_offsets[] = {0, q_count};
            one.q_offsets = one_offsets;
            one.kv_start = &k_first;
            one.kv_count = &k_count;
            std::pair<std::vector<float>, std::vector<float>> out{std::vector<float>(size_t{1} * q_count * kHd),
                                                                  std::vector<float>(probs_elems / 3)};
            cpu::attention(one, q.data() + q_first * kHd, k.data(), v.data(), nullptr, out.first.data(),
                           out.second.data());
            return out;
        };
        const auto [o0, p0] = reference(0, kQLen, 0, kKvLen);
        const auto [o2, p2] = reference(25, 5, 50, 7);

        test::CudaStream stream;
        test::DeviceBuffer<float> q_dev(q.size());
        test::DeviceBuffer<float> k_dev(k.size());
        test::DeviceBuffer<float> v_dev(v.size());
        test::DeviceBuffer<float> o_dev(static_cast<size_t>(q_rows * kHd));
        test::DeviceBuffer<float> probs_dev(probs_elems);
        test::DeviceBuffer<int32_t> q_offsets_dev(q_offsets.size());
        test::DeviceBuffer<int32_t> kv_start_dev(kv_start.size());
        test::DeviceBuffer<int32_t> kv_count_dev(kv_count.size());
        q_dev.upload(q);
        k_dev.upload(k);
        v_dev.upload(v);
        q_offsets_dev.upload(q_offsets);
        kv_start_dev.upload(kv_start);
        kv_count_dev.upload(kv_count);
        o_dev.poison_nan();
        probs_dev.poison_nan();
        p.q_offsets = q_offsets_dev.data();
        p.kv_start = kv_start_dev.data();
        p.kv_count = kv_count_dev.data();
        cuda::fused_attention(p, q_dev.data(), k_dev.data(), v_dev.data(), nullptr, o_dev.data(), probs_dev.data(),
                              stream.get());
        stream.synchronize();

        const std::vector<float> o = o_dev.download();
        const std::vector<float> probs = probs_dev.download();
        const test::Tolerance tol{1e-9, 1e-5, 1e-5};
        EXPECT_TRUE(test::all_close({o.begin(), o.begin() + kQLen * kHd}, o0, tol)) << "sequence 0, clamped";
        EXPECT_TRUE(std::all_of(o.begin() + kQLen * kHd, o.begin() + 20 * kHd, [](float x) { return std::isnan(x); }))
            << "rows past Lq must stay unwritten";
        EXPECT_TRUE(std::all_of(o.begin() + 20 * kHd, o.begin() + 25 * kHd, [](float x) { return x == 0.0f; }))
            << "a sequence without keys gets zero rows";
        EXPECT_TRUE(test::all_close({o.begin() + 25 * kHd, o.end()}, o2, tol)) << "sequence 2";
        const size_t block = probs_elems / 3;  // one sequence's H·Lq·Lk
        EXPECT_TRUE(test::all_close({probs.begin(), probs.begin() + block}, p0, tol)) << "P of sequence 0";
        EXPECT_TRUE(std::all_of(probs.begin() + block, probs.begin() + 2 * block, [](float x) {
            return std::isnan(x);
        })) << "a sequence without keys has no P entries";
        const ProbBlocks found = prob_blocks({probs.begin() + 2 * block, probs.end()}, kHeads, kQLen, kKvLen, {5}, {7});
        const ProbBlocks expected = prob_blocks(p2, kHeads, kQLen, kKvLen, {5}, {7});
        EXPECT_TRUE(test::all_close(found.inside, expected.inside, tol)) << "P of sequence 2";
        EXPECT_TRUE(found.outside_untouched) << "P of sequence 2 written outside its block";
        EXPECT_TRUE(o_dev.check_guards());
        EXPECT_TRUE(probs_dev.check_guards());
    }
}

}  // namespace
}  // namespace vqa

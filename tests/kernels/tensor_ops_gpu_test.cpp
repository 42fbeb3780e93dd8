// CUDA glue ops (kernels/tensor_ops.h) against the few lines of the CPU graph each one replaces
// (engine/cpu_model.cpp, engine/cpu_image_encoder.cpp), repeated here as references: conversions with specials and
// strided rows, gathers with out-of-range indices, position add, length masks, the region rule for all-zero rows
// (-0.0, NaN, values that vanish in fp16), argmax with ties and NaN as std::max_element, greedy decoding
// bookkeeping over several steps, and the feature-map transpose. Tail sizes and misaligned buffers throughout.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/topk.h"
#include "kernels/tensor_ops.h"
#include "tests/kernels/gpu_case.h"
#include "tests/kernels/test_util.h"

namespace vqa {
namespace {

using test::Precision;

enum class Op {
    kConvertTo,
    kConvertFrom,
    kGather,
    kGatherBytes,
    kAddPosition,
    kLengths,
    kNonzero,
    kArgmax,
    kGreedy,
    kTranspose
};

// One case of one op; the fields an op does not use stay 0.
struct Case {
    Op op = Op::kConvertTo;
    Precision precision = Precision::kFp32;
    int64_t batch = 0;  // B / N
    int64_t rows = 0;   // rows, Bi (gather), L (add_position), steps (greedy), R (transpose)
    int64_t cols = 0;   // cols, block (gather), d, L (lengths), A (greedy), C (transpose)
    int64_t pad = 0;    // convert_rows: row strides cols + pad
    size_t misalign = 0;
};

std::string case_string(const Case& c) {
    const std::string p = test::precision_name(c.precision);
    const auto n = [](const char* label, int64_t v) { return std::string("_") + label + std::to_string(v); };
    std::string name;
    switch (c.op) {
        case Op::kConvertTo:
            name = "fp32_to_" + p + n("R", c.rows) + n("C", c.cols);
            break;
        case Op::kConvertFrom:
            name = p + "_to_fp32" + n("R", c.rows) + n("C", c.cols);
            break;
        case Op::kGather:
        case Op::kGatherBytes:
            name = "Gather_" + (c.op == Op::kGather ? p : std::string("u8")) + n("Bi", c.rows) + n("B", c.batch) +
                   n("block", c.cols);
            break;
        case Op::kAddPosition:
            name = "AddPosition_" + p + n("B", c.batch) + n("L", c.rows) + n("d", c.cols);
            break;
        case Op::kLengths:
            name = "LengthsToMask_B" + std::to_string(c.batch) + n("L", c.cols);
            break;
        case Op::kNonzero:
            name = "NonzeroRowMask_" + p + n("R", c.rows) + n("C", c.cols);
            break;
        case Op::kArgmax:
            name = "Argmax_" + p + n("R", c.rows) + n("C", c.cols);
            break;
        case Op::kGreedy:
            name = "GreedyStep_" + p + n("B", c.batch) + n("A", c.cols) + n("steps", c.rows);
            break;
        case Op::kTranspose:
            name = "Transpose_" + p + n("N", c.batch) + n("R", c.rows) + n("C", c.cols);
            break;
    }
    return name + (c.pad != 0 ? n("pad", c.pad) : "") + (c.misalign != 0 ? n("off", c.misalign) : "");
}
void PrintTo(const Case& c, std::ostream* out) {
    *out << case_string(c);
}

std::vector<float> as_float(const std::vector<uint8_t>& v) {
    return {v.begin(), v.end()};
}
std::vector<float> as_float(const std::vector<int32_t>& v) {
    return {v.begin(), v.end()};
}

// ---- convert ------------------------------------------------------------------------------------------------------

// Random values with specials every 97 elements: overflow to ±inf and rounding to 65504 in fp16, -0.0, and a value
// that is 0 in fp16 but not in bf16.
std::vector<float> convert_input(size_t n) {
    std::vector<float> v = test::random_vector(n, 61, -4.0f, 4.0f);
    const float specials[] = {1e5f, -0.0f, 1e-9f, 65519.0f, -7e4f};
    for (size_t i = 0; i < n; ++i) {
        if (i % 97 >= 5 && i % 97 < 10) {
            v[i] = specials[i % 97 - 5];
        }
    }
    return v;
}

// The [rows, cols] part of a buffer with rows `stride` apart; fails if a padding element is not NaN any more.
std::vector<float> dense_part(const std::vector<float>& data, int64_t rows, int64_t cols, int64_t stride) {
    std::vector<float> out(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r) {
        std::copy_n(data.begin() + r * stride, cols, out.begin() + r * cols);
        for (int64_t j = cols; j < stride && r + 1 < rows; ++j) {
            EXPECT_TRUE(std::isnan(data[static_cast<size_t>(r * stride + j)])) << "padding [" << r << ", " << j << "]";
        }
    }
    return out;
}

template <typename Src, typename Dst>
void run_convert(const Case& c, const std::vector<float>& src_values, const std::vector<float>& expected) {
    RowsShape shape;
    shape.rows = c.rows;
    shape.cols = c.cols;
    shape.src_row_stride = shape.dst_row_stride = c.pad == 0 ? 0 : c.cols + c.pad;
    const auto size = static_cast<size_t>((c.rows - 1) * shape.dst_stride() + c.cols);
    std::vector<float> src_rows(size, 1.0f);
    for (int64_t r = 0; r < c.rows; ++r) {
        std::copy_n(src_values.begin() + r * c.cols, c.cols, src_rows.begin() + r * shape.src_stride());
    }
    test::CudaStream stream;
    test::DeviceBuffer<Src> src(size);
    test::DeviceBuffer<Dst> dst(size, c.misalign);
    src.upload(test::from_float<Src>(src_rows));
    dst.poison_nan();
    if (c.rows == 1 && c.pad == 0) {
        cuda::convert(src.data(), dst.data(), c.cols, stream.get());
    } else {
        cuda::convert_rows(shape, src.data(), dst.data(), stream.get());
    }
    stream.synchronize();
    const std::vector<float> found = dense_part(test::to_float(dst.download()), c.rows, c.cols, shape.dst_stride());
    EXPECT_TRUE(test::all_close(found, expected, test::kExact, {c.rows, c.cols}));
    EXPECT_TRUE(dst.check_guards());
}

template <typename T>
void check_convert(const Case& c) {
    const std::vector<float> values = convert_input(static_cast<size_t>(c.rows * c.cols));
    if (c.op == Op::kConvertTo) {
        run_convert<float, T>(c, values, test::round_to<T>(values));
    } else {
        run_convert<T, float>(c, test::round_to<T>(values), test::round_to<T>(values));
    }
}

// ---- gather_rows --------------------------------------------------------------------------------------------------

// index [B] in [0, Bi), with -1 at 1 and Bi at B - 1 when B >= 4 (a zero block each).
std::vector<int64_t> gather_index(int64_t count, int64_t src_rows) {
    const std::vector<float> u = test::random_vector(static_cast<size_t>(count), 71, 0.0f, 1.0f);
    std::vector<int64_t> index(u.size());
    for (size_t b = 0; b < u.size(); ++b) {
        index[b] = std::min(static_cast<int64_t>(u[b] * static_cast<float>(src_rows)), src_rows - 1);
    }
    if (count >= 4) {
        index[1] = -1;
        index[static_cast<size_t>(count - 1)] = src_rows;
    }
    return index;
}

template <typename T>
void run_gather(const Case& c, const std::vector<T>& src_values) {
    const std::vector<int64_t> index = gather_index(c.batch, c.rows);
    std::vector<T> expected(static_cast<size_t>(c.batch * c.cols), T{});
    for (int64_t b = 0; b < c.batch; ++b) {
        const int64_t s = index[static_cast<size_t>(b)];
        if (s >= 0 && s < c.rows) {
            std::copy_n(src_values.begin() + s * c.cols, c.cols, expected.begin() + b * c.cols);
        }
    }
    test::CudaStream stream;
    test::DeviceBuffer<T> src(src_values.size());
    test::DeviceBuffer<int64_t> index_dev(index.size());
    test::DeviceBuffer<T> dst(expected.size(), c.misalign);
    src.upload(src_values);
    index_dev.upload(index);
    dst.poison_nan();
    cuda::gather_rows(src.data(), c.rows, index_dev.data(), c.batch, c.cols, dst.data(), stream.get());
    stream.synchronize();
    const std::vector<T> found = dst.download();
    if constexpr (std::is_same_v<T, uint8_t>) {
        EXPECT_TRUE(test::all_close(as_float(found), as_float(expected), test::kExact, {c.batch, c.cols}));
    } else {
        EXPECT_TRUE(test::all_close(test::to_float(found), test::to_float(expected), test::kExact, {c.batch, c.cols}));
    }
    EXPECT_TRUE(dst.check_guards());
}

template <typename T>
void check_gather(const Case& c) {
    run_gather<T>(c, test::from_float<T>(test::random_vector(static_cast<size_t>(c.rows * c.cols), 72)));
}

void check_gather_bytes(const Case& c) {
    const std::vector<float> u = test::random_vector(static_cast<size_t>(c.rows * c.cols), 73, 0.0f, 254.0f);
    std::vector<uint8_t> bytes(u.size());
    std::transform(u.begin(), u.end(), bytes.begin(), [](float v) { return static_cast<uint8_t>(v); });
    run_gather<uint8_t>(c, bytes);
}

// ---- add_position, lengths_to_mask -------------------------------------------------------------------------------

template <typename T>
void check_add_position(const Case& c) {
    const int64_t batch = c.batch, len = c.rows, dim = c.cols;
    const std::vector<float> x = test::round_to<T>(test::random_vector(static_cast<size_t>(batch * len * dim), 81));
    const std::vector<float> pos = test::round_to<T>(test::random_vector(static_cast<size_t>((len + 2) * dim), 82));
    std::vector<float> sum(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        sum[i] = x[i] + pos[i % static_cast<size_t>(len * dim)];
    }
    test::CudaStream stream;
    test::DeviceBuffer<T> x_dev(x.size(), c.misalign);
    test::DeviceBuffer<T> pos_dev(pos.size());
    x_dev.upload(test::from_float<T>(x));
    pos_dev.upload(test::from_float<T>(pos));
    cuda::add_position(x_dev.data(), pos_dev.data(), batch, len, dim, stream.get());
    stream.synchronize();
    // One float addition of two T values, rounded once to T, on both sides.
    EXPECT_TRUE(
        test::all_close(test::to_float(x_dev.download()), test::round_to<T>(sum), test::kExact, {batch, len, dim}));
    EXPECT_TRUE(x_dev.check_guards());
}

void check_lengths(const Case& c) {
    std::vector<int64_t> lengths(static_cast<size_t>(c.batch));
    const std::vector<float> u = test::random_vector(lengths.size(), 91, 0.0f, 1.0f);
    for (size_t b = 0; b < lengths.size(); ++b) {
        lengths[b] = 1 + std::min(static_cast<int64_t>(u[b] * static_cast<float>(c.cols)), c.cols - 1);
    }
    const int64_t edge[] = {c.cols, 0, c.cols + 5, -1};  // full, empty, past L, negative
    for (size_t i = 0; i < 4 && i < lengths.size(); ++i) {
        lengths[i] = edge[i];
    }
    std::vector<uint8_t> expected(static_cast<size_t>(c.batch * c.cols));
    for (int64_t b = 0; b < c.batch; ++b) {
        for (int64_t l = 0; l < c.cols; ++l) {
            expected[static_cast<size_t>(b * c.cols + l)] = l < lengths[static_cast<size_t>(b)] ? 1 : 0;
        }
    }
    test::CudaStream stream;
    test::DeviceBuffer<int64_t> lengths_dev(lengths.size());
    test::DeviceBuffer<uint8_t> mask(expected.size(), c.misalign);
    lengths_dev.upload(lengths);
    mask.poison_nan();
    cuda::lengths_to_mask(lengths_dev.data(), c.batch, c.cols, mask.data(), stream.get());
    stream.synchronize();
    EXPECT_TRUE(test::all_close(as_float(mask.download()), as_float(expected), test::kExact, {c.batch, c.cols}));
    EXPECT_TRUE(mask.check_guards());
}

// ---- nonzero_row_mask ---------------------------------------------------------------------------------------------

template <typename T>
void check_nonzero(const Case& c) {
    const int64_t rows = c.rows, cols = c.cols;
    std::vector<float> feat = test::random_vector(static_cast<size_t>(rows * cols), 101);
    // Row r % 6: 0 all zero, 1 zero but one -0.0, 2 zero but a tiny value (0 in fp16: masked there, as the CPU rule
    // on the converted values says), 3 zero but a NaN (not zero), 4 zero but the last element, 5 random.
    for (int64_t r = 0; r < rows && cols > 0; ++r) {
        float* row = feat.data() + r * cols;
        if (r % 6 == 5) {
            continue;
        }
        std::fill_n(row, cols, 0.0f);
        const float lone[] = {0.0f, -0.0f, 1e-9f, std::numeric_limits<float>::quiet_NaN(), 0.5f};
        row[r % 6 == 4 ? cols - 1 : (r * 7) % cols] = lone[r % 6];
    }
    feat = test::round_to<T>(feat);
    std::vector<uint8_t> expected(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
        const float* row = feat.data() + r * cols;
        expected[static_cast<size_t>(r)] = std::any_of(row, row + cols, [](float v) { return v != 0.0f; }) ? 1 : 0;
    }
    test::CudaStream stream;
    test::DeviceBuffer<T> feat_dev(std::max<size_t>(feat.size(), 1), c.misalign);
    test::DeviceBuffer<uint8_t> mask(expected.size());
    if (!feat.empty()) {
        feat_dev.upload(test::from_float<T>(feat));
    }
    mask.poison_nan();
    cuda::nonzero_row_mask(feat_dev.data(), rows, cols, mask.data(), stream.get());
    stream.synchronize();
    EXPECT_TRUE(test::all_close(as_float(mask.download()), as_float(expected), test::kExact, {rows}));
    EXPECT_TRUE(mask.check_guards());
}

// ---- argmax_rows and greedy_step ----------------------------------------------------------------------------------

// The CPU decoder's first_argmax.
int32_t first_argmax(const float* row, int64_t n) {
    return static_cast<int32_t>(std::max_element(row, row + n) - row);
}

// Random rows, with special rows first: a tie for the maximum, NaN at 0, NaN before the maximum, all NaN, all
// equal, +inf twice, all -inf.
std::vector<float> argmax_input(int64_t rows, int64_t cols, uint64_t seed) {
    std::vector<float> x = test::random_vector(static_cast<size_t>(rows * cols), seed, -8.0f, 8.0f);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    for (int64_t r = 0; r < std::min<int64_t>(rows, 7); ++r) {
        float* row = x.data() + r * cols;
        const int64_t a = cols / 3;
        const int64_t b = cols - 1;
        switch (r) {
            case 0:
                row[a] = row[b] = 9.0f;
                break;
            case 1:
                row[0] = nan;
                break;
            case 2:
                row[a] = nan;
                row[b] = 9.0f;
                break;
            case 3:
                std::fill_n(row, cols, nan);
                break;
            case 4:
                std::fill_n(row, cols, 1.5f);
                break;
            case 5:
                row[a] = row[b] = inf;
                break;
            default:
                std::fill_n(row, cols, -inf);
        }
    }
    return x;
}

template <typename T>
void check_argmax(const Case& c) {
    const std::vector<float> x = test::round_to<T>(argmax_input(c.rows, c.cols, 111));
    std::vector<int32_t> expected(static_cast<size_t>(c.rows));
    for (int64_t r = 0; r < c.rows; ++r) {
        expected[static_cast<size_t>(r)] = first_argmax(x.data() + r * c.cols, c.cols);
    }
    test::CudaStream stream;
    test::DeviceBuffer<T> x_dev(x.size(), c.misalign);
    test::DeviceBuffer<int32_t> ids(expected.size());
    x_dev.upload(test::from_float<T>(x));
    ids.poison_nan();
    cuda::argmax_rows(x_dev.data(), c.rows, c.cols, ids.data(), stream.get());
    stream.synchronize();
    EXPECT_TRUE(test::all_close(as_float(ids.download()), as_float(expected), test::kExact, {c.rows}));
    EXPECT_TRUE(ids.check_guards());
}

template <typename T>
void check_greedy(const Case& c) {
    const int64_t batch = c.batch, answers = c.cols, steps = c.rows, max_steps = steps + 2;
    const int32_t eos = static_cast<int32_t>(answers / 2);
    // Step s of row b picks eos when (b + s) % 3 == 0, so rows finish at steps 0, 1 and 2 and then idle.
    std::vector<float> logits = test::random_vector(static_cast<size_t>(steps * batch * answers), 121, -6.0f, 6.0f);
    for (int64_t s = 0; s < steps; ++s) {
        for (int64_t b = 0; b < batch; ++b) {
            if ((b + s) % 3 == 0) {
                logits[static_cast<size_t>((s * batch + b) * answers + eos)] = 7.0f;
            }
        }
    }
    logits = test::round_to<T>(logits);

    // engine/cpu_model.cpp decode_greedy's bookkeeping, with -1 for the steps after a row's eos.
    std::vector<int32_t> next(static_cast<size_t>(batch)), tokens(static_cast<size_t>(batch * max_steps), 0x7f7f7f7f);
    std::vector<uint8_t> done(static_cast<size_t>(batch), 0);
    std::vector<float> scores(static_cast<size_t>(batch), 1.0f);
    std::vector<float> probs(static_cast<size_t>(batch * answers));
    for (int64_t s = 0; s < steps; ++s) {
        const float* step_logits = logits.data() + s * batch * answers;
        cpu::softmax_rows(step_logits, probs.data(), batch, answers);
        for (int64_t b = 0; b < batch; ++b) {
            const auto i = static_cast<size_t>(b);
            next[i] = first_argmax(step_logits + b * answers, answers);
            int32_t& token = tokens[static_cast<size_t>(b * max_steps + s)];
            if (done[i] != 0) {
                token = -1;
                continue;
            }
            scores[i] *= probs[static_cast<size_t>(b * answers + next[i])];
            token = next[i];
            done[i] = next[i] == eos ? 1 : 0;
        }
    }

    test::CudaStream stream;
    test::DeviceBuffer<T> logits_dev(logits.size(), c.misalign);
    test::DeviceBuffer<int32_t> next_dev(next.size()), tokens_dev(tokens.size());
    test::DeviceBuffer<uint8_t> done_dev(done.size());
    test::DeviceBuffer<float> scores_dev(scores.size());
    logits_dev.upload(test::from_float<T>(logits));
    tokens_dev.upload(std::vector<int32_t>(tokens.size(), 0x7f7f7f7f));  // the columns never reached keep this
    next_dev.poison_nan();
    done_dev.poison_nan();  // step 0 must start every row afresh: neither done nor scores is read there
    scores_dev.poison_nan();
    GreedyStepParams p;
    p.batch = batch;
    p.num_answers = answers;
    p.max_steps = max_steps;
    p.eos_id = eos;
    for (p.step = 0; p.step < steps; ++p.step) {
        cuda::greedy_step(p, logits_dev.data() + p.step * batch * answers, next_dev.data(), done_dev.data(),
                          scores_dev.data(), tokens_dev.data(), stream.get());
    }
    stream.synchronize();
    EXPECT_TRUE(test::all_close(as_float(tokens_dev.download()), as_float(tokens), test::kExact, {batch, max_steps}));
    EXPECT_TRUE(test::all_close(as_float(next_dev.download()), as_float(next), test::kExact, {batch}));
    EXPECT_TRUE(test::all_close(as_float(done_dev.download()), as_float(done), test::kExact, {batch}));
    // The same float logits on both sides; the sum of up to 3000 exponentials runs in another order (sequential on
    // the CPU, a tree on the GPU: about sqrt(A)·2^-24 relative each, up to 1e-4 in the worst case), over 6 steps.
    EXPECT_TRUE(test::all_close(scores_dev.download(), scores, test::Tolerance{1e-9, 1e-7, 1e-4}, {batch}));
    EXPECT_TRUE(next_dev.check_guards());
    EXPECT_TRUE(tokens_dev.check_guards());
    EXPECT_TRUE(done_dev.check_guards());
    EXPECT_TRUE(scores_dev.check_guards());
}

// ---- batched_transpose --------------------------------------------------------------------------------------------

template <typename T>
void check_transpose(const Case& c) {
    const int64_t n = c.batch, rows = c.rows, cols = c.cols;
    const std::vector<float> src = test::round_to<T>(test::random_vector(static_cast<size_t>(n * rows * cols), 131));
    std::vector<float> expected(src.size());
    for (int64_t b = 0; b < n; ++b) {
        for (int64_t r = 0; r < rows; ++r) {
            for (int64_t k = 0; k < cols; ++k) {
                expected[static_cast<size_t>((b * cols + k) * rows + r)] =
                    src[static_cast<size_t>((b * rows + r) * cols + k)];
            }
        }
    }
    test::CudaStream stream;
    test::DeviceBuffer<T> src_dev(src.size(), c.misalign);
    test::DeviceBuffer<T> dst(src.size());
    src_dev.upload(test::from_float<T>(src));
    dst.poison_nan();
    cuda::batched_transpose(src_dev.data(), dst.data(), n, rows, cols, stream.get());
    stream.synchronize();
    EXPECT_TRUE(test::all_close(test::to_float(dst.download()), expected, test::kExact, {n, cols, rows}));
    EXPECT_TRUE(dst.check_guards());
}

// ---- cases ----------------------------------------------------------------------------------------------------------

std::vector<Case> convert_cases() {
    std::vector<Case> cases;
    for (const Precision precision : test::kPrecisions) {
        for (const Op op : {Op::kConvertTo, Op::kConvertFrom}) {
            if (op == Op::kConvertFrom && precision == Precision::kFp32) {
                continue;  // float -> float is the kConvertTo case
            }
            for (const int64_t n : {1, 3, 1023, 1024, 1025, 64 * 300 + 3}) {
                cases.push_back({op, precision, 0, 1, n});
            }
            cases.push_back({op, precision, 0, 1, 1025, 0, 1});   // misaligned dst: element path
            cases.push_back({op, precision, 0, 36, 2048, 5});     // regions into [F | 5 box columns]
            cases.push_back({op, precision, 0, 36, 2048, 8});     // strided, every row start aligned
            cases.push_back({op, precision, 0, 3, 1025, 3});      // aligned row starts, a tail in every row
            cases.push_back({op, precision, 0, 100, 300, 0, 3});  // dense rows, misaligned
        }
    }
    return cases;
}

std::vector<Case> gather_cases() {
    std::vector<Case> cases;
    for (const Precision precision : test::kPrecisions) {
        cases.push_back({Op::kGather, precision, 64, 3, 36 * 512});         // image tokens, 16-byte words
        cases.push_back({Op::kGather, precision, 3, 1, 14 * 31});           // odd block: element words
        cases.push_back({Op::kGather, precision, 5, 4, 100 * 1024, 0, 1});  // misaligned dst
        cases.push_back({Op::kGather, precision, 1, 1, 1});
    }
    for (const int64_t block : {1, 14, 36, 100}) {
        cases.push_back({Op::kGatherBytes, Precision::kFp32, 64, 3, block});  // masks
    }
    cases.push_back({Op::kGatherBytes, Precision::kFp32, 5, 2, 36, 0, 3});
    return cases;
}

std::vector<Case> elementwise_cases() {
    std::vector<Case> cases;
    for (const Precision precision : test::kPrecisions) {
        for (const auto& [batch, len, dim] : {std::tuple<int64_t, int64_t, int64_t>{1, 14, 512},
                                              {3, 33, 300},
                                              {64, 14, 1024},
                                              {3, 14, 31},
                                              {1, 1, 1}}) {
            cases.push_back({Op::kAddPosition, precision, batch, len, dim});
        }
        cases.push_back({Op::kAddPosition, precision, 3, 14, 512, 0, 1});
        for (const auto& [rows, cols] :
             {std::pair<int64_t, int64_t>{3 * 36, 2048}, {100, 2053}, {64 * 36, 300}, {5, 1}, {7, 0}}) {
            cases.push_back({Op::kNonzero, precision, 0, rows, cols});
        }
        cases.push_back({Op::kNonzero, precision, 0, 36, 2048, 0, 1});
        for (const auto& [n, rows, cols] :
             {std::tuple<int64_t, int64_t, int64_t>{2, 512, 49}, {3, 2048, 196}, {1, 33, 31}, {1, 1, 1}, {5, 64, 36}}) {
            cases.push_back({Op::kTranspose, precision, n, rows, cols});
        }
        cases.push_back({Op::kTranspose, precision, 2, 100, 33, 0, 1});
    }
    for (const auto& [batch, len] : {std::pair<int64_t, int64_t>{1, 1}, {3, 14}, {64, 33}, {5, 300}}) {
        cases.push_back({Op::kLengths, Precision::kFp32, batch, 0, len});
    }
    cases.push_back({Op::kLengths, Precision::kFp32, 3, 0, 14, 0, 1});
    return cases;
}

std::vector<Case> decode_cases() {
    std::vector<Case> cases;
    for (const Precision precision : test::kPrecisions) {
        for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {7, 31}, {64, 3000}, {9, 1025}}) {
            cases.push_back({Op::kArgmax, precision, 0, rows, cols});
        }
        cases.push_back({Op::kArgmax, precision, 0, 9, 100, 0, 1});
        for (const auto& [batch, answers] : {std::pair<int64_t, int64_t>{1, 1}, {3, 31}, {64, 3000}, {5, 1025}}) {
            cases.push_back({Op::kGreedy, precision, batch, 6, answers});
        }
    }
    return cases;
}

class TensorOpsGpuTest : public ::testing::TestWithParam<Case> {};

TEST_P(TensorOpsGpuTest, MatchesReference) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    const Case& c = GetParam();
    if (c.op == Op::kLengths) {
        check_lengths(c);
        return;
    }
    if (c.op == Op::kGatherBytes) {
        check_gather_bytes(c);
        return;
    }
    test::with_element_type(c.precision, [&](auto element) {
        using T = decltype(element);
        switch (c.op) {
            case Op::kConvertTo:
            case Op::kConvertFrom:
                return check_convert<T>(c);
            case Op::kGather:
                return check_gather<T>(c);
            case Op::kAddPosition:
                return check_add_position<T>(c);
            case Op::kNonzero:
                return check_nonzero<T>(c);
            case Op::kArgmax:
                return check_argmax<T>(c);
            case Op::kGreedy:
                return check_greedy<T>(c);
            case Op::kTranspose:
                return check_transpose<T>(c);
            default:
                FAIL() << "unhandled op";
        }
    });
}

INSTANTIATE_TEST_SUITE_P(Convert, TensorOpsGpuTest, ::testing::ValuesIn(convert_cases()), test::case_name<Case>);
INSTANTIATE_TEST_SUITE_P(Gather, TensorOpsGpuTest, ::testing::ValuesIn(gather_cases()), test::case_name<Case>);
INSTANTIATE_TEST_SUITE_P(Elementwise,
                         TensorOpsGpuTest,
                         ::testing::ValuesIn(elementwise_cases()),
                         test::case_name<Case>);
INSTANTIATE_TEST_SUITE_P(Decode, TensorOpsGpuTest, ::testing::ValuesIn(decode_cases()), test::case_name<Case>);

}  // namespace
}  // namespace vqa

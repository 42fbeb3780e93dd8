// CUDA recurrent gate updates (kernels/rnn.h) driven the way the CUDA backend drives them, "cuBLAS GEMM + gate
// kernel per step", against the CPU reference layers (kernels/cpu/rnn.h): a whole LSTM sequence against
// cpu::lstm_sequence (h of every step and the final cell state), and single LSTMCell / GRUCell steps against
// cpu::lstm_cell_step / cpu::gru_cell_step, in place and out of place, with padded row strides and misaligned
// buffers, with and without biases, fp32/fp16/bf16.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/rnn.h"
#include "kernels/cublas_handle.h"
#include "kernels/rnn.h"
#include "tests/kernels/gpu_case.h"
#include "tests/kernels/test_util.h"

namespace vqa {
namespace {

using cuda::CublasHandle;
using cuda::cuda_type;
using test::Precision;

constexpr int kEmbed = 300;  // E: the GloVe width of the question embeddings

// fp32: the GEMMs differ from OpenBLAS's in summation order (K = 300 and K = Hd up to 1024) and CUDA's expf/tanhf
// from glibc's by an ulp or two; the state feeds every step back, so over 33 steps the h error grows to a few
// 1e-7 (a float emulation against double measured at most 2.3e-7 for Hd = 1024): atol 2e-6, twice the
// single-op default, keeps the 1e-5 relative bound meaningful for h values near 0.
// fp16/bf16: gx and gh are rounded to T by the GEMM and h by the kernel at every step, the gate math and c are
// float; an emulation of exactly that pipeline measured, over 33 steps and Hd up to 1024, at most |dh| 1.9e-4 and
// nmse 1.1e-7 in fp16, |dh| 1.7e-3 and nmse 6.8e-6 in bf16 (8 bits of mantissa). The bounds leave 5-10x margin.
test::Tolerance rnn_tolerance(Precision precision) {
    switch (precision) {
        case Precision::kFp32:
            return {1e-10, 2e-6, 1e-5};
        case Precision::kFp16:
            return {1e-5, 2e-3, 1e-2};
        case Precision::kBf16:
            return {1e-4, 5e-3, 1e-2};
    }
    return {};
}

// c [M, N] (rows ldc apart) = a [M, K] (rows lda apart) · w [N, K]ᵀ (rows K apart) + beta · c, fp32 accumulation
// (pedantic in fp32: no TF32). Row-major C is column-major Cᵀ = W · Aᵀ, hence the swapped operands.
template <typename T>
void gemm(const CublasHandle& handle,
          int64_t m,
          int64_t n,
          int64_t k,
          const T* a,
          int64_t lda,
          const T* w,
          float beta,
          T* c,
          int64_t ldc) {
    const float alpha = 1.0f;
    const cublasComputeType_t compute = sizeof(T) == 4 ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
    VQA_CUBLAS_CHECK(cublasGemmEx(handle.get(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                                  static_cast<int>(k), &alpha, w, cuda_type<T>(), static_cast<int>(k), a,
                                  cuda_type<T>(), static_cast<int>(lda), &beta, c, cuda_type<T>(),
                                  static_cast<int>(ldc), compute, CUBLAS_GEMM_DEFAULT));
}

// U(-bound, bound) values from a fixed seed, rounded to T (the values the GPU sees).
template <typename T>
std::vector<float> uniform(int64_t n, uint64_t seed, float bound) {
    return test::round_to<T>(test::random_vector(static_cast<size_t>(n), seed, -bound, bound));
}

// One layer's weights with G gates, scaled like PyTorch's initialisation (U(-1/sqrt(fan_in), 1/sqrt(fan_in))) so
// that the gates stay in the sensitive range of σ and tanh, on the host (for the reference) and the device.
template <typename T>
struct Weights {
    std::vector<float> w_ih, w_hh, b_ih, b_hh;
    test::DeviceBuffer<T> w_ih_dev, w_hh_dev, b_ih_dev, b_hh_dev;
    bool bias;

    Weights(int64_t gates, int64_t hidden, int64_t input, bool with_bias, uint64_t seed)
        : w_ih(uniform<T>(gates * hidden * input, seed, 1.0f / std::sqrt(static_cast<float>(input)))),
          w_hh(uniform<T>(gates * hidden * hidden, seed + 1, 1.0f / std::sqrt(static_cast<float>(hidden)))),
          b_ih(uniform<T>(gates * hidden, seed + 2, 0.5f)),
          b_hh(uniform<T>(gates * hidden, seed + 3, 0.5f)),
          w_ih_dev(w_ih.size()),
          w_hh_dev(w_hh.size()),
          b_ih_dev(b_ih.size()),
          b_hh_dev(b_hh.size()),
          bias(with_bias) {
        w_ih_dev.upload(test::from_float<T>(w_ih));
        w_hh_dev.upload(test::from_float<T>(w_hh));
        b_ih_dev.upload(test::from_float<T>(b_ih));
        b_hh_dev.upload(test::from_float<T>(b_hh));
    }
    cpu::RnnWeights view() const {
        return {w_ih.data(), w_hh.data(), bias ? b_ih.data() : nullptr, bias ? b_hh.data() : nullptr};
    }
    const T* bias_ih() const { return bias ? b_ih_dev.data() : nullptr; }
    const T* bias_hh() const { return bias ? b_hh_dev.data() : nullptr; }
};

std::string suffix(Precision precision, bool bias) {
    return std::string("_") + test::precision_name(precision) + (bias ? "" : "_nobias");
}

// ---- LSTM over a sequence -----------------------------------------------------------------------------------------

struct SeqCase {
    int batch = 1;    // B
    int seq_len = 1;  // L
    int hidden = 1;   // Hd
    Precision precision = Precision::kFp32;
    bool bias = true;
    bool accumulate = false;  // h·W_hhᵀ accumulated into the gx slice (beta = 1), gh = null at every step
};

// B3_L14_Hd64_E300_fp16, with _nobias and _acc suffixes.
std::string case_string(const SeqCase& c) {
    return "B" + std::to_string(c.batch) + "_L" + std::to_string(c.seq_len) + "_Hd" + std::to_string(c.hidden) + "_E" +
           std::to_string(kEmbed) + suffix(c.precision, c.bias) + (c.accumulate ? "_acc" : "");
}
void PrintTo(const SeqCase& c, std::ostream* out) {
    *out << case_string(c);
}

std::vector<SeqCase> seq_cases() {
    std::vector<SeqCase> cases;
    for (const Precision precision : test::kPrecisions) {
        for (const int hidden : {1, 31, 64, 512, 1024}) {
            cases.push_back({3, 14, hidden, precision});
        }
        for (const int batch : {1, 64}) {
            for (const int seq_len : {1, 33}) {
                cases.push_back({batch, seq_len, 64, precision});
            }
        }
        cases.push_back({64, 33, 1024, precision});  // the largest question encoder
        cases.push_back({3, 33, 31, precision, false});
        cases.push_back({3, 14, 512, precision, true, true});
        cases.push_back({1, 33, 1, precision, false, true});
    }
    return cases;
}

template <typename T>
void check_lstm_sequence(const SeqCase& c) {
    const int64_t batch = c.batch;
    const int64_t seq_len = c.seq_len;
    const int64_t hd = c.hidden;
    const int64_t gate_width = 4 * hd;
    const Weights<T> w(4, hd, kEmbed, c.bias, 41);
    const std::vector<float> x = uniform<T>(batch * seq_len * kEmbed, 40, 1.0f);

    std::vector<float> h_ref(static_cast<size_t>(batch * seq_len * hd));
    std::vector<float> scratch(static_cast<size_t>(cpu::lstm_sequence_scratch_floats(batch, seq_len, hd)));
    cpu::lstm_sequence(w.view(), x.data(), h_ref.data(), batch, seq_len, kEmbed, hd, scratch.data());
    // The reference leaves the final cell state after the step projections in its scratch.
    const std::vector<float> c_ref(scratch.end() - batch * hd, scratch.end());

    test::CudaStream stream;
    const CublasHandle cublas(stream.get());
    test::DeviceBuffer<T> x_dev(x.size());
    test::DeviceBuffer<T> gx_dev(static_cast<size_t>(batch * seq_len * gate_width));
    test::DeviceBuffer<T> gh_dev(static_cast<size_t>(batch * gate_width));
    test::DeviceBuffer<T> h_dev(h_ref.size());
    test::DeviceBuffer<float> c_dev(c_ref.size());
    x_dev.upload(test::from_float<T>(x));
    h_dev.poison_nan();
    c_dev.poison_nan();  // step 0 must not read it (c_prev = null)

    gemm(cublas, batch * seq_len, gate_width, kEmbed, x_dev.data(), kEmbed, w.w_ih_dev.data(), 0.0f, gx_dev.data(),
         gate_width);
    const RnnGatesParams p = lstm_sequence_gates_params(batch, seq_len, hd);
    for (int64_t t = 0; t < seq_len; ++t) {
        T* gx_t = gx_dev.data() + t * gate_width;
        const T* gh = nullptr;
        if (t > 0) {
            const T* h_prev = h_dev.data() + (t - 1) * hd;  // rows L·Hd apart
            if (c.accumulate) {
                gemm(cublas, batch, gate_width, hd, h_prev, seq_len * hd, w.w_hh_dev.data(), 1.0f, gx_t,
                     seq_len * gate_width);
            } else {
                gemm(cublas, batch, gate_width, hd, h_prev, seq_len * hd, w.w_hh_dev.data(), 0.0f, gh_dev.data(),
                     gate_width);
                gh = gh_dev.data();
            }
        }
        cuda::lstm_gates(p, gx_t, gh, w.bias_ih(), w.bias_hh(), t > 0 ? c_dev.data() : nullptr, c_dev.data(),
                         h_dev.data() + t * hd, stream.get());
    }
    stream.synchronize();

    const test::Tolerance tol = rnn_tolerance(c.precision);
    EXPECT_TRUE(test::all_close(test::to_float(h_dev.download()), h_ref, tol, {batch, seq_len, hd})) << "h_all";
    EXPECT_TRUE(test::all_close(c_dev.download(), c_ref, tol, {batch, hd})) << "final cell state";
    EXPECT_TRUE(h_dev.check_guards());
    EXPECT_TRUE(c_dev.check_guards());
}

class LstmSequenceGpuTest : public ::testing::TestWithParam<SeqCase> {};

TEST_P(LstmSequenceGpuTest, MatchesCpuLstmSequence) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    test::with_element_type(GetParam().precision,
                            [&](auto element) { check_lstm_sequence<decltype(element)>(GetParam()); });
}

INSTANTIATE_TEST_SUITE_P(Grid, LstmSequenceGpuTest, ::testing::ValuesIn(seq_cases()), test::case_name<SeqCase>);

// ---- LSTMCell and GRUCell steps -----------------------------------------------------------------------------------

enum class Cell { kLstm, kGru };

struct CellCase {
    Cell cell = Cell::kLstm;
    int batch = 1;   // B
    int hidden = 1;  // Hd
    Precision precision = Precision::kFp32;
    bool bias = true;
    bool in_place = true;  // h (and c) updated over themselves, as the decoder does
    bool padded = false;   // row strides past the dense widths: gx 4·Hd + 3, gh 4·Hd + 5, h Hd + 1 (and misaligned)

    int gates() const { return cell == Cell::kLstm ? 4 : 3; }
};

// Lstm_B3_Hd64_E300_fp16, with _nobias, _out (out of place) and _pad suffixes.
std::string case_string(const CellCase& c) {
    return std::string(c.cell == Cell::kLstm ? "Lstm" : "Gru") + "_B" + std::to_string(c.batch) + "_Hd" +
           std::to_string(c.hidden) + "_E" + std::to_string(kEmbed) + suffix(c.precision, c.bias) +
           (c.in_place ? "" : "_out") + (c.padded ? "_pad" : "");
}
void PrintTo(const CellCase& c, std::ostream* out) {
    *out << case_string(c);
}

std::vector<CellCase> cell_cases() {
    std::vector<CellCase> cases;
    for (const Cell cell : {Cell::kLstm, Cell::kGru}) {
        for (const Precision precision : test::kPrecisions) {
            for (const int batch : {1, 3, 64}) {
                for (const int hidden : {1, 31, 64, 512, 1024}) {
                    cases.push_back({cell, batch, hidden, precision});
                }
            }
            cases.push_back({cell, 3, 31, precision, false});
            cases.push_back({cell, 3, 64, precision, true, false});
            cases.push_back({cell, 3, 31, precision, true, true, true});
            cases.push_back({cell, 64, 512, precision, true, false, true});
            cases.push_back({cell, 1, 1, precision, false, false, true});
        }
    }
    return cases;
}

// [B, width] values laid out in rows `stride` apart, the padding NaN (it must stay NaN: no kernel writes it).
std::vector<float> strided(const std::vector<float>& dense, int64_t rows, int64_t width, int64_t stride) {
    std::vector<float> out(static_cast<size_t>(rows * stride), NAN);
    for (int64_t r = 0; r < rows; ++r) {
        std::copy_n(dense.begin() + r * width, width, out.begin() + r * stride);
    }
    return out;
}

// The dense [B, width] part of rows `stride` apart; fails if a padding element is not NaN any more.
std::vector<float> dense_rows(const std::vector<float>& rows_data, int64_t rows, int64_t width, int64_t stride) {
    std::vector<float> out(static_cast<size_t>(rows * width));
    for (int64_t r = 0; r < rows; ++r) {
        std::copy_n(rows_data.begin() + r * stride, width, out.begin() + r * width);
        for (int64_t j = width; j < stride; ++j) {
            EXPECT_TRUE(std::isnan(rows_data[static_cast<size_t>(r * stride + j)]))
                << "padding element [" << r << ", " << j << "] was written";
        }
    }
    return out;
}

template <typename T>
void check_cell(const CellCase& c) {
    const int64_t batch = c.batch;
    const int64_t hd = c.hidden;
    const int64_t gate_width = c.gates() * hd;
    const size_t misalign = c.padded ? 1 : 0;
    RnnGatesParams p = lstm_cell_gates_params(batch, hd);
    if (c.padded) {
        p.gx_row_stride = gate_width + 3;
        p.gh_row_stride = gate_width + 5;
        p.h_row_stride = hd + 1;
    }
    const int64_t h_stride = p.h_stride();
    const Weights<T> w(c.gates(), hd, kEmbed, c.bias, 51);
    const std::vector<float> x = uniform<T>(batch * kEmbed, 50, 1.0f);
    const std::vector<float> h0 = uniform<T>(batch * hd, 52, 1.0f);
    const std::vector<float> c0 =
        test::random_vector(static_cast<size_t>(batch * hd), 53, -2.0f, 2.0f);  // float state: not rounded

    std::vector<float> h_ref(h0.size());
    std::vector<float> c_ref(c0.size());
    std::vector<float> scratch(static_cast<size_t>(batch * 6 * hd));
    if (c.cell == Cell::kLstm) {
        cpu::lstm_cell_step(w.view(), x.data(), h0.data(), c0.data(), h_ref.data(), c_ref.data(), batch, kEmbed, hd,
                            scratch.data());
    } else {
        cpu::gru_cell_step(w.view(), x.data(), h0.data(), h_ref.data(), batch, kEmbed, hd, scratch.data());
    }

    test::CudaStream stream;
    const CublasHandle cublas(stream.get());
    test::DeviceBuffer<T> x_dev(x.size());
    test::DeviceBuffer<T> gx_dev(static_cast<size_t>(batch * p.gx_stride(c.gates())), misalign);
    test::DeviceBuffer<T> gh_dev(static_cast<size_t>(batch * p.gh_stride(c.gates())), misalign);
    test::DeviceBuffer<T> h_dev(static_cast<size_t>(batch * h_stride), misalign);
    test::DeviceBuffer<T> h_out_dev(static_cast<size_t>(batch * h_stride), misalign);
    test::DeviceBuffer<float> c_dev(c0.size(), misalign);
    test::DeviceBuffer<float> c_out_dev(c0.size(), misalign);
    x_dev.upload(test::from_float<T>(x));
    h_dev.upload(test::from_float<T>(strided(h0, batch, hd, h_stride)));
    c_dev.upload(c0);
    h_out_dev.poison_nan();
    c_out_dev.poison_nan();
    gx_dev.poison_nan();  // the GEMMs write every used element; padding columns stay NaN and must not be read
    gh_dev.poison_nan();

    gemm(cublas, batch, gate_width, kEmbed, x_dev.data(), kEmbed, w.w_ih_dev.data(), 0.0f, gx_dev.data(),
         p.gx_stride(c.gates()));
    gemm(cublas, batch, gate_width, hd, h_dev.data(), h_stride, w.w_hh_dev.data(), 0.0f, gh_dev.data(),
         p.gh_stride(c.gates()));
    T* h_out = c.in_place ? h_dev.data() : h_out_dev.data();
    float* c_out = c.in_place ? c_dev.data() : c_out_dev.data();
    if (c.cell == Cell::kLstm) {
        cuda::lstm_gates(p, gx_dev.data(), gh_dev.data(), w.bias_ih(), w.bias_hh(), c_dev.data(), c_out, h_out,
                         stream.get());
    } else {
        cuda::gru_gates(p, gx_dev.data(), gh_dev.data(), w.bias_ih(), w.bias_hh(), h_dev.data(), h_out, stream.get());
    }
    stream.synchronize();

    const test::Tolerance tol = rnn_tolerance(c.precision);
    const std::vector<float> h_found = test::to_float(c.in_place ? h_dev.download() : h_out_dev.download());
    EXPECT_TRUE(test::all_close(dense_rows(h_found, batch, hd, h_stride), h_ref, tol, {batch, hd})) << "h";
    if (c.cell == Cell::kLstm) {
        EXPECT_TRUE(test::all_close(c.in_place ? c_dev.download() : c_out_dev.download(), c_ref, tol, {batch, hd}))
            << "c";
    }
    if (!c.in_place) {
        EXPECT_TRUE(
            test::all_close(dense_rows(test::to_float(h_dev.download()), batch, hd, h_stride), h0, test::kExact))
            << "the previous state h was modified by an out-of-place update";
    }
    EXPECT_TRUE(h_dev.check_guards());
    EXPECT_TRUE(h_out_dev.check_guards());
    EXPECT_TRUE(c_dev.check_guards());
    EXPECT_TRUE(c_out_dev.check_guards());
}

class RnnCellGpuTest : public ::testing::TestWithParam<CellCase> {};

TEST_P(RnnCellGpuTest, MatchesCpuCellStep) {
    VQA_SKIP_WITHOUT_CUDA_DEVICE();
    test::with_element_type(GetParam().precision, [&](auto element) { check_cell<decltype(element)>(GetParam()); });
}

INSTANTIATE_TEST_SUITE_P(Grid, RnnCellGpuTest, ::testing::ValuesIn(cell_cases()), test::case_name<CellCase>);

}  // namespace
}  // namespace vqa

// CPU LSTM sequence and LSTM/GRU cell steps against PyTorch's per-step formulas evaluated in double.
#include "kernels/cpu/rnn.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "tests/kernels/test_util.h"

namespace vqa::cpu {
namespace {

using test::all_close;
using test::random_vector;

// fp32 GEMMs feeding σ/tanh: errors of a few 1e-7, growing slowly with the steps of a sequence (the state feeds
// back); atol 1e-6 and rtol 1e-5 hold over 33 steps.
constexpr test::Tolerance kRnnTolerance{1e-7, 1e-6, 1e-5};

double sigmoid(double v) {
    return 1.0 / (1.0 + std::exp(-v));
}

// W[row, :] · v in double.
double dot(const std::vector<float>& w, int64_t row, const double* v, int64_t n) {
    double acc = 0.0;
    for (int64_t k = 0; k < n; ++k) {
        acc += w[row * n + k] * v[k];
    }
    return acc;
}

// The weights of one layer with G gates, from fixed seeds; scaled so that gates stay away from saturation.
struct Weights {
    std::vector<float> w_ih, w_hh, b_ih, b_hh;
    Weights(int64_t gates, int64_t E, int64_t Hd, uint64_t seed)
        : w_ih(random_vector(gates * Hd * E, seed, -0.3f, 0.3f)),
          w_hh(random_vector(gates * Hd * Hd, seed + 1, -0.3f, 0.3f)),
          b_ih(random_vector(gates * Hd, seed + 2)),
          b_hh(random_vector(gates * Hd, seed + 3)) {}
    RnnWeights view(bool with_bias) const {
        return {w_ih.data(), w_hh.data(), with_bias ? b_ih.data() : nullptr, with_bias ? b_hh.data() : nullptr};
    }
};

// One LSTM step of one sample in double: updates h and c.
void reference_lstm_step(
    const Weights& w, bool bias, const double* x, int64_t E, std::vector<double>& h, std::vector<double>& c) {
    const int64_t Hd = static_cast<int64_t>(h.size());
    std::vector<double> gates(4 * Hd);
    for (int64_t g = 0; g < 4 * Hd; ++g) {
        gates[g] = dot(w.w_ih, g, x, E) + dot(w.w_hh, g, h.data(), Hd) + (bias ? w.b_ih[g] + w.b_hh[g] : 0.0);
    }
    for (int64_t j = 0; j < Hd; ++j) {
        c[j] = sigmoid(gates[Hd + j]) * c[j] + sigmoid(gates[j]) * std::tanh(gates[2 * Hd + j]);
        h[j] = sigmoid(gates[3 * Hd + j]) * std::tanh(c[j]);
    }
}

using RnnParam = std::tuple<int64_t, int64_t, int64_t, int64_t, bool>;  // B, L, E, Hd, bias

class LstmSequenceTest : public testing::TestWithParam<RnnParam> {};

TEST_P(LstmSequenceTest, MatchesPerStepFormulas) {
    const auto& [B, L, E, Hd, with_bias] = GetParam();
    const Weights w(4, E, Hd, 10);
    const std::vector<float> x = random_vector(B * L * E, 1);
    std::vector<float> h_all(B * L * Hd);
    std::vector<float> scratch(lstm_sequence_scratch_floats(B, L, Hd));
    test::poison_nan(h_all);
    test::poison_nan(scratch);
    lstm_sequence(w.view(with_bias), x.data(), h_all.data(), B, L, E, Hd, scratch.data());

    std::vector<float> expected(h_all.size());
    for (int64_t b = 0; b < B; ++b) {
        std::vector<double> h(Hd, 0.0), c(Hd, 0.0);
        for (int64_t t = 0; t < L; ++t) {
            std::vector<double> xt(x.begin() + (b * L + t) * E, x.begin() + (b * L + t + 1) * E);
            reference_lstm_step(w, with_bias, xt.data(), E, h, c);
            for (int64_t j = 0; j < Hd; ++j) {
                expected[(b * L + t) * Hd + j] = static_cast<float>(h[j]);
            }
        }
    }
    EXPECT_TRUE(all_close(h_all, expected, kRnnTolerance, {B, L, Hd}));
}

std::string rnn_case_name(const testing::TestParamInfo<RnnParam>& info) {
    const auto& [B, L, E, Hd, bias] = info.param;
    return "B" + std::to_string(B) + "_L" + std::to_string(L) + "_E" + std::to_string(E) + "_Hd" + std::to_string(Hd) +
           (bias ? "_bias" : "_nobias");
}

INSTANTIATE_TEST_SUITE_P(Shapes,
                         LstmSequenceTest,
                         testing::Combine(testing::Values(1, 3),
                                          testing::Values(1, 2, 14, 33),
                                          testing::Values(1, 7, 32),
                                          testing::Values(1, 31, 64),
                                          testing::Bool()),
                         rnn_case_name);

using CellParam = std::tuple<int64_t, int64_t, int64_t, bool>;  // B, E, Hd, in place

std::string cell_case_name(const testing::TestParamInfo<CellParam>& info) {
    const auto& [B, E, Hd, in_place] = info.param;
    return "B" + std::to_string(B) + "_E" + std::to_string(E) + "_Hd" + std::to_string(Hd) +
           (in_place ? "_inplace" : "");
}

class CellStepTest : public testing::TestWithParam<CellParam> {};

TEST_P(CellStepTest, LstmCellMatchesFormula) {
    const auto& [B, E, Hd, in_place] = GetParam();
    const Weights w(4, E, Hd, 20);
    const std::vector<float> x = random_vector(B * E, 1);
    const std::vector<float> h = random_vector(B * Hd, 2);
    const std::vector<float> c = random_vector(B * Hd, 3, -2.0f, 2.0f);
    std::vector<float> scratch(B * 4 * Hd);
    test::poison_nan(scratch);
    std::vector<float> h_out = h, c_out = c;
    if (!in_place) {
        test::poison_nan(h_out);
        test::poison_nan(c_out);
    }
    lstm_cell_step(w.view(true), x.data(), in_place ? h_out.data() : h.data(), in_place ? c_out.data() : c.data(),
                   h_out.data(), c_out.data(), B, E, Hd, scratch.data());

    std::vector<float> expected_h(B * Hd), expected_c(B * Hd);
    for (int64_t b = 0; b < B; ++b) {
        std::vector<double> hb(h.begin() + b * Hd, h.begin() + (b + 1) * Hd);
        std::vector<double> cb(c.begin() + b * Hd, c.begin() + (b + 1) * Hd);
        std::vector<double> xb(x.begin() + b * E, x.begin() + (b + 1) * E);
        reference_lstm_step(w, true, xb.data(), E, hb, cb);
        for (int64_t j = 0; j < Hd; ++j) {
            expected_h[b * Hd + j] = static_cast<float>(hb[j]);
            expected_c[b * Hd + j] = static_cast<float>(cb[j]);
        }
    }
    EXPECT_TRUE(all_close(h_out, expected_h, kRnnTolerance, {B, Hd}));
    EXPECT_TRUE(all_close(c_out, expected_c, kRnnTolerance, {B, Hd}));
}

TEST_P(CellStepTest, GruCellMatchesFormula) {
    const auto& [B, E, Hd, in_place] = GetParam();
    const Weights w(3, E, Hd, 30);
    const std::vector<float> x = random_vector(B * E, 4);
    const std::vector<float> h = random_vector(B * Hd, 5);
    std::vector<float> scratch(B * 6 * Hd);
    test::poison_nan(scratch);
    std::vector<float> h_out = h;
    if (!in_place) {
        test::poison_nan(h_out);
    }
    gru_cell_step(w.view(true), x.data(), in_place ? h_out.data() : h.data(), h_out.data(), B, E, Hd, scratch.data());

    std::vector<float> expected(B * Hd);
    for (int64_t b = 0; b < B; ++b) {
        std::vector<double> hb(h.begin() + b * Hd, h.begin() + (b + 1) * Hd);
        std::vector<double> xb(x.begin() + b * E, x.begin() + (b + 1) * E);
        for (int64_t j = 0; j < Hd; ++j) {
            // PyTorch GRUCell: gate rows r = [0, Hd), z = [Hd, 2Hd), n = [2Hd, 3Hd)
            const auto gi = [&](int64_t g) { return dot(w.w_ih, g * Hd + j, xb.data(), E) + w.b_ih[g * Hd + j]; };
            const auto gh = [&](int64_t g) { return dot(w.w_hh, g * Hd + j, hb.data(), Hd) + w.b_hh[g * Hd + j]; };
            const double r = sigmoid(gi(0) + gh(0));
            const double z = sigmoid(gi(1) + gh(1));
            const double n = std::tanh(gi(2) + r * gh(2));
            expected[b * Hd + j] = static_cast<float>((1.0 - z) * n + z * hb[j]);
        }
    }
    EXPECT_TRUE(all_close(h_out, expected, kRnnTolerance, {B, Hd}));
}

INSTANTIATE_TEST_SUITE_P(Shapes,
                         CellStepTest,
                         testing::Combine(testing::Values(1, 2, 7),
                                          testing::Values(1, 31, 100),
                                          testing::Values(1, 32, 33),
                                          testing::Bool()),
                         cell_case_name);

}  // namespace
}  // namespace vqa::cpu

#include "kernels/cpu/rnn.h"

#include <cmath>

#include "kernels/check.h"
#include "kernels/cpu/linear.h"

namespace vqa::cpu {
namespace {

// Below this many state elements a cell update is faster than waking the OpenMP team.
constexpr int64_t kParallelMinElements = int64_t{1} << 13;

float sigmoid(float v) {
    return 1.0f / (1.0f + std::exp(-v));
}

void check_rnn_args(const char* op, const RnnWeights& w, int64_t batch, int64_t input_size, int64_t hidden) {
    VQA_CHECK(batch >= 0 && input_size >= 1 && hidden >= 1, kInvalidArgument, op,
              ": expected B >= 0, E >= 1, Hd >= 1, got B=", batch, " E=", input_size, " Hd=", hidden);
    VQA_CHECK(w.weight_ih != nullptr && w.weight_hh != nullptr, kInvalidArgument, op,
              ": weight_ih and weight_hh must not be null");
}

// One LSTM state update from the pre-activation gates [4·Hd] of one sample, bias_hh not yet added.
void lstm_update(const float* gates, const float* bias_hh, const float* c, float* h_out, float* c_out, int64_t hidden) {
    for (int64_t j = 0; j < hidden; ++j) {
        float g[4];
        for (int64_t k = 0; k < 4; ++k) {
            g[k] = gates[k * hidden + j] + (bias_hh != nullptr ? bias_hh[k * hidden + j] : 0.0f);
        }
        const float c_new = sigmoid(g[1]) * (c != nullptr ? c[j] : 0.0f) + sigmoid(g[0]) * std::tanh(g[2]);
        c_out[j] = c_new;
        h_out[j] = sigmoid(g[3]) * std::tanh(c_new);
    }
}

}  // namespace

int64_t lstm_sequence_scratch_floats(int64_t batch, int64_t seq_len, int64_t hidden) {
    return batch * seq_len * 4 * hidden + batch * hidden;
}

void lstm_sequence(const RnnWeights& weights,
                   const float* x,
                   float* h_all,
                   int64_t batch,
                   int64_t seq_len,
                   int64_t input_size,
                   int64_t hidden,
                   float* scratch) {
    check_rnn_args("cpu::lstm_sequence", weights, batch, input_size, hidden);
    VQA_CHECK(seq_len >= 0, kInvalidArgument, "cpu::lstm_sequence: expected L >= 0, got ", seq_len);
    if (batch == 0 || seq_len == 0) {
        return;
    }
    VQA_CHECK(x != nullptr && h_all != nullptr && scratch != nullptr, kInvalidArgument,
              "cpu::lstm_sequence: x, h_all and scratch (lstm_sequence_scratch_floats() floats) must not be null");
    const int64_t gate_width = 4 * hidden;
    float* gates = scratch;                                // [B, L, 4·Hd]
    float* cell = scratch + batch * seq_len * gate_width;  // [B, Hd]
    linear(x, weights.weight_ih, weights.bias_ih, nullptr, gates, batch * seq_len, gate_width, input_size);
    for (int64_t t = 0; t < seq_len; ++t) {
        float* gates_t = gates + t * gate_width;  // rows seq_len·4·Hd apart
        if (t > 0) {
            // gates_t += h_{t−1} W_hhᵀ, h_{t−1} read in place from h_all
            gemm(false, true, batch, gate_width, hidden, 1.0f, h_all + (t - 1) * hidden, seq_len * hidden,
                 weights.weight_hh, hidden, 1.0f, gates_t, seq_len * gate_width);
        }
#pragma omp parallel for schedule(static) if (batch * hidden >= kParallelMinElements)
        for (int64_t b = 0; b < batch; ++b) {
            float* c_b = cell + b * hidden;
            lstm_update(gates_t + b * seq_len * gate_width, weights.bias_hh, t > 0 ? c_b : nullptr,
                        h_all + (b * seq_len + t) * hidden, c_b, hidden);
        }
    }
}

void lstm_cell_step(const RnnWeights& weights,
                    const float* x,
                    const float* h,
                    const float* c,
                    float* h_out,
                    float* c_out,
                    int64_t batch,
                    int64_t input_size,
                    int64_t hidden,
                    float* scratch) {
    check_rnn_args("cpu::lstm_cell_step", weights, batch, input_size, hidden);
    if (batch == 0) {
        return;
    }
    VQA_CHECK(
        x != nullptr && h != nullptr && c != nullptr && h_out != nullptr && c_out != nullptr && scratch != nullptr,
        kInvalidArgument, "cpu::lstm_cell_step: x, h, c, h_out, c_out and scratch ([B, 4·Hd]) must not be null");
    const int64_t gate_width = 4 * hidden;
    linear(x, weights.weight_ih, weights.bias_ih, nullptr, scratch, batch, gate_width, input_size);
    gemm(false, true, batch, gate_width, hidden, 1.0f, h, hidden, weights.weight_hh, hidden, 1.0f, scratch, gate_width);
#pragma omp parallel for schedule(static) if (batch * hidden >= kParallelMinElements)
    for (int64_t b = 0; b < batch; ++b) {
        lstm_update(scratch + b * gate_width, weights.bias_hh, c + b * hidden, h_out + b * hidden, c_out + b * hidden,
                    hidden);
    }
}

void gru_cell_step(const RnnWeights& weights,
                   const float* x,
                   const float* h,
                   float* h_out,
                   int64_t batch,
                   int64_t input_size,
                   int64_t hidden,
                   float* scratch) {
    check_rnn_args("cpu::gru_cell_step", weights, batch, input_size, hidden);
    if (batch == 0) {
        return;
    }
    VQA_CHECK(x != nullptr && h != nullptr && h_out != nullptr && scratch != nullptr, kInvalidArgument,
              "cpu::gru_cell_step: x, h, h_out and scratch ([B, 6·Hd]) must not be null");
    const int64_t gate_width = 3 * hidden;
    float* input_gates = scratch;                        // [B, 3·Hd]: W_i· x + b_i·
    float* hidden_gates = scratch + batch * gate_width;  // [B, 3·Hd]: W_h· h + b_h· (n needs it apart)
    linear(x, weights.weight_ih, weights.bias_ih, nullptr, input_gates, batch, gate_width, input_size);
    linear(h, weights.weight_hh, weights.bias_hh, nullptr, hidden_gates, batch, gate_width, hidden);
#pragma omp parallel for schedule(static) if (batch * hidden >= kParallelMinElements)
    for (int64_t b = 0; b < batch; ++b) {
        const float* gi = input_gates + b * gate_width;
        const float* gh = hidden_gates + b * gate_width;
        for (int64_t j = 0; j < hidden; ++j) {
            const float r = sigmoid(gi[j] + gh[j]);
            const float z = sigmoid(gi[hidden + j] + gh[hidden + j]);
            const float n = std::tanh(gi[2 * hidden + j] + r * gh[2 * hidden + j]);
            const float h_prev = h[b * hidden + j];  // read before h_out (which may alias h) is written
            h_out[b * hidden + j] = (1.0f - z) * n + z * h_prev;
        }
    }
}

}  // namespace vqa::cpu

// Recurrent layers in PyTorch's formulation: the question LSTM over a whole sequence (docs/model-format.md §5)
// and single LSTM/GRU cell steps for the answer decoder (§8).
#pragma once

#include <cstdint>

namespace vqa::cpu {

// PyTorch recurrent weights, gates stacked along the rows: LSTM (i, f, g, o), G = 4; GRUCell (r, z, n), G = 3.
struct RnnWeights {
    const float* weight_ih = nullptr;  // [G·Hd, E]
    const float* weight_hh = nullptr;  // [G·Hd, Hd]
    const float* bias_ih = nullptr;    // [G·Hd] or null
    const float* bias_hh = nullptr;    // [G·Hd] or null
};

// Floats of the scratch lstm_sequence needs: the input projection of every step [B, L, 4·Hd] and the cell state
// [B, Hd].
int64_t lstm_sequence_scratch_floats(int64_t batch, int64_t seq_len, int64_t hidden);

// One-layer unidirectional LSTM from a zero state over all L steps (padding included):
//   gates = x_t W_ihᵀ + b_ih + h_{t−1} W_hhᵀ + b_hh; i, f, o = σ(·), g = tanh(·);
//   c_t = f ⊙ c_{t−1} + i ⊙ g;  h_t = o ⊙ tanh(c_t).
// The input projection of all steps is one GEMM; then one GEMM per step over the batch.
void lstm_sequence(const RnnWeights& weights,
                   const float* x,  // [B, L, E]
                   float* h_all,    // [B, L, Hd]: h_t of every step
                   int64_t batch,
                   int64_t seq_len,
                   int64_t input_size,
                   int64_t hidden,
                   float* scratch);  // lstm_sequence_scratch_floats(B, L, Hd) floats

// One LSTMCell step for a batch. h_out/c_out may alias h/c (the state updated in place).
void lstm_cell_step(const RnnWeights& weights,
                    const float* x,  // [B, E]
                    const float* h,  // [B, Hd]
                    const float* c,  // [B, Hd]
                    float* h_out,    // [B, Hd]
                    float* c_out,    // [B, Hd]
                    int64_t batch,
                    int64_t input_size,
                    int64_t hidden,
                    float* scratch);  // [B, 4·Hd]: the gates

// One GRUCell step for a batch: r = σ(W_ir x + b_ir + W_hr h + b_hr), z likewise,
// n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), h' = (1 − z) ⊙ n + z ⊙ h. h_out may alias h.
void gru_cell_step(const RnnWeights& weights,
                   const float* x,  // [B, E]
                   const float* h,  // [B, Hd]
                   float* h_out,    // [B, Hd]
                   int64_t batch,
                   int64_t input_size,
                   int64_t hidden,
                   float* scratch);  // [B, 6·Hd]: input gates [B, 3·Hd], then hidden gates [B, 3·Hd]

}  // namespace vqa::cpu

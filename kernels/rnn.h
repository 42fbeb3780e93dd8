// Pointwise gate updates of PyTorch's LSTM, LSTMCell and GRUCell (CUDA entry points). The recurrent layers of the
// model (docs/model-format.md §5, §8) run on the GPU as "the caller's GEMMs + one of these kernels per step"; the
// CPU reference of the whole layer is kernels/cpu/rnn.h, and these kernels compute exactly its pointwise part.
//
// The split between the caller (cuBLAS / cuBLASLt) and these kernels:
//
//   LSTM over a sequence (the question encoder), x [B, L, E], h_all [B, L, Hd], c [B, Hd] float:
//     once:        gx_all [B, L, 4·Hd] = x · W_ihᵀ            one GEMM over M = B·L rows (b_ih: the GEMM's bias
//                                                               epilogue, or pass bias_ih here, not both)
//     step t = 0:  lstm_gates(p, gx_all + 0, gh = null, bias_ih, bias_hh, c_prev = null, c, h_all + 0)
//     step t > 0:  gh [B, 4·Hd] = h_all[:, t−1, :] · W_hhᵀ    one GEMM, A rows L·Hd apart (lda = L·Hd)
//                  lstm_gates(p, gx_all + t·4·Hd, gh, bias_ih, bias_hh, c_prev = c, c, h_all + t·Hd)
//     with p = lstm_sequence_gates_params(B, L, Hd): gx rows L·4·Hd apart, h rows L·Hd apart. Passing null for gh
//     and c_prev at t = 0 is the zero initial state (h_{−1} = c_{−1} = 0) without a GEMM or a memset.
//     A caller may instead accumulate h·W_hhᵀ into the gx_all slice (beta = 1, ldc = L·4·Hd, as the CPU
//     reference does) and pass gh = null at every step.
//   LSTMCell (the answer decoder), h [B, Hd] in T, c [B, Hd] float:
//     gx = x · W_ihᵀ and gh = h · W_hhᵀ (two GEMMs, or one over [x | h] against [W_ih | W_hh] with gh = null),
//     then lstm_gates(lstm_cell_gates_params(B, Hd), gx, gh, bias_ih, bias_hh, c, c, h): h and c updated in
//     place (the GEMM has consumed h before the kernel runs, in stream order).
//   GRUCell (the answer decoder), h [B, Hd]:
//     gx = x · W_ihᵀ and gh = h · W_hhᵀ without biases (n needs W_hn·h + b_hn apart from the input part, so the
//     two cannot be summed by one GEMM), then gru_gates(gru_cell_gates_params(B, Hd), gx, gh, bias_ih, bias_hh,
//     h, h): h' may be written over h.
//
// Formulas (gates stacked i, f, g, o for the LSTM and r, z, n for the GRU, each Hd wide, as in PyTorch):
//   LSTM: a = gx + b_ih + gh + b_hh;  c' = σ(a_f) ⊙ c + σ(a_i) ⊙ tanh(a_g);  h' = σ(a_o) ⊙ tanh(c')
//   GRU:  r = σ(gx_r + b_ir + gh_r + b_hr);  z = σ(gx_z + b_iz + gh_z + b_hz);
//         n = tanh(gx_n + b_in + r ⊙ (gh_n + b_hn));  h' = (1 − z) ⊙ n + z ⊙ h
// A null bias is zero. The gate math is float for every element type T (float, __half, __nv_bfloat16): inputs are
// widened, and only h' is rounded to T. The LSTM cell state c is float whatever T is: it is a running sum that
// every step feeds back, and rounding it to fp16/bf16 each step would let the error of all earlier steps pile up
// in the state, while h is bounded by |tanh| <= 1 and is rounded once per step to feed the next GEMM.
#pragma once

#include <cstdint>

#include "kernels/check.h"

#if VQA_WITH_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#endif

namespace vqa {

// One step of the gate update of B samples with hidden size Hd; G = 4 (LSTM) or 3 (GRU) gates.
struct RnnGatesParams {
    int64_t batch = 0;          // B
    int64_t hidden = 0;         // Hd
    int64_t gx_row_stride = 0;  // from gx[b, 0] to gx[b + 1, 0]; 0 means dense (G·Hd)
    int64_t gh_row_stride = 0;  // from gh[b, 0] to gh[b + 1, 0]; 0 means dense (G·Hd)
    int64_t h_row_stride = 0;   // from h[b, 0] to h[b + 1, 0] (h_out and, for the GRU, h); 0 means dense (Hd)
    // c_prev and c are always dense [B, Hd] float.

    int64_t gx_stride(int gates) const { return gx_row_stride == 0 ? gates * hidden : gx_row_stride; }
    int64_t gh_stride(int gates) const { return gh_row_stride == 0 ? gates * hidden : gh_row_stride; }
    int64_t h_stride() const { return h_row_stride == 0 ? hidden : h_row_stride; }
};

// Step t of an LSTM over [B, L, ·] buffers: gx is the step's slice of the input projection [B, L, 4·Hd] and h the
// step's slice of h_all [B, L, Hd] (the caller offsets both pointers by t rows of the step); gh is dense [B, 4·Hd].
inline RnnGatesParams lstm_sequence_gates_params(int64_t batch, int64_t seq_len, int64_t hidden) {
    RnnGatesParams p;
    p.batch = batch;
    p.hidden = hidden;
    p.gx_row_stride = seq_len * 4 * hidden;
    p.h_row_stride = seq_len * hidden;
    return p;
}

// One LSTMCell step: gx, gh [B, 4·Hd], h [B, Hd], all dense.
inline RnnGatesParams lstm_cell_gates_params(int64_t batch, int64_t hidden) {
    RnnGatesParams p;
    p.batch = batch;
    p.hidden = hidden;
    return p;
}

// One GRUCell step: gx, gh [B, 3·Hd], h [B, Hd], all dense.
inline RnnGatesParams gru_cell_gates_params(int64_t batch, int64_t hidden) {
    return lstm_cell_gates_params(batch, hidden);
}

// Checks the sizes and strides of a gate update with `gates` gates (4: LSTM, 3: GRU); `op` names the caller in
// the message. Throws vqa::Error(kInvalidArgument).
inline void check_rnn_gates_shape(const RnnGatesParams& p, int gates, const char* op) {
    VQA_CHECK(p.batch >= 0 && p.hidden >= 1, kInvalidArgument, op, ": expected B >= 0 and Hd >= 1, got B=", p.batch,
              " Hd=", p.hidden);
    VQA_CHECK(p.gx_row_stride == 0 || p.gx_row_stride >= gates * p.hidden, kInvalidArgument, op,
              ": expected gx_row_stride >= ", gates, "·Hd = ", gates * p.hidden, " (or 0 for dense rows), got ",
              p.gx_row_stride);
    VQA_CHECK(p.gh_row_stride == 0 || p.gh_row_stride >= gates * p.hidden, kInvalidArgument, op,
              ": expected gh_row_stride >= ", gates, "·Hd = ", gates * p.hidden, " (or 0 for dense rows), got ",
              p.gh_row_stride);
    VQA_CHECK(p.h_row_stride == 0 || p.h_row_stride >= p.hidden, kInvalidArgument, op,
              ": expected h_row_stride >= Hd = ", p.hidden, " (or 0 for dense rows), got ", p.h_row_stride);
}

// Checks an LSTM gate update's arguments (gh, the biases and c_prev may be null). Throws
// vqa::Error(kInvalidArgument).
inline void check_lstm_gates_args(
    const RnnGatesParams& p, const void* gx, const float* c, const void* h, const char* op) {
    check_rnn_gates_shape(p, 4, op);
    if (p.batch == 0) {
        return;
    }
    VQA_CHECK(gx != nullptr && c != nullptr && h != nullptr, kInvalidArgument, op,
              ": gx, c and h must not be null for a non-empty batch");
}

// Checks a GRU gate update's arguments (the biases may be null). Throws vqa::Error(kInvalidArgument).
inline void check_gru_gates_args(
    const RnnGatesParams& p, const void* gx, const void* gh, const void* h, const void* h_out, const char* op) {
    check_rnn_gates_shape(p, 3, op);
    if (p.batch == 0) {
        return;
    }
    VQA_CHECK(gx != nullptr && gh != nullptr && h != nullptr && h_out != nullptr, kInvalidArgument, op,
              ": gx, gh, h and h_out must not be null for a non-empty batch");
}

#if VQA_WITH_CUDA
namespace cuda {

// LSTM / LSTMCell gate update (formulas above).
//   gx:      [B, 4·Hd] (rows gx_stride(4) apart): x·W_ihᵀ, with b_ih already added or not
//   gh:      [B, 4·Hd] (rows gh_stride(4) apart): h_{t−1}·W_hhᵀ, or null = zeros (first step of a sequence)
//   bias_ih: [4·Hd] or null (null when the GEMM's epilogue added it, or the layer has none)
//   bias_hh: [4·Hd] or null
//   c_prev:  [B, Hd] float, or null = zeros (first step); may alias c
//   c:       [B, Hd] float: the new cell state
//   h:       [B, Hd] (rows h_stride() apart): the new hidden state; must not overlap gx or gh
// One thread per (b, j). Asynchronous on `stream`; no allocation. Instantiated for T = float, __half and
// __nv_bfloat16.
template <typename T>
void lstm_gates(const RnnGatesParams& params,
                const T* gx,
                const T* gh,
                const T* bias_ih,
                const T* bias_hh,
                const float* c_prev,
                float* c,
                T* h,
                cudaStream_t stream);

// GRUCell gate update (formulas above).
//   gx:      [B, 3·Hd] (rows gx_stride(3) apart): x·W_ihᵀ without b_ih
//   gh:      [B, 3·Hd] (rows gh_stride(3) apart): h·W_hhᵀ without b_hh (required: the n gate needs it alone)
//   bias_ih: [3·Hd] or null;  bias_hh: [3·Hd] or null
//   h:       [B, Hd] (rows h_stride() apart): the previous state
//   h_out:   [B, Hd] (rows h_stride() apart): the new state; may alias h, must not overlap gx or gh
// One thread per (b, j). Asynchronous on `stream`; no allocation. Instantiated for T = float, __half and
// __nv_bfloat16.
template <typename T>
void gru_gates(const RnnGatesParams& params,
               const T* gx,
               const T* gh,
               const T* bias_ih,
               const T* bias_hh,
               const T* h,
               T* h_out,
               cudaStream_t stream);

#define VQA_DETAIL_DECLARE_RNN_GATES(T)                                                                             \
    extern template void lstm_gates<T>(const RnnGatesParams&, const T*, const T*, const T*, const T*, const float*, \
                                       float*, T*, cudaStream_t);                                                   \
    extern template void gru_gates<T>(const RnnGatesParams&, const T*, const T*, const T*, const T*, const T*, T*,  \
                                      cudaStream_t);
VQA_DETAIL_DECLARE_RNN_GATES(float)
VQA_DETAIL_DECLARE_RNN_GATES(__half)
VQA_DETAIL_DECLARE_RNN_GATES(__nv_bfloat16)
#undef VQA_DETAIL_DECLARE_RNN_GATES

}  // namespace cuda
#endif

}  // namespace vqa

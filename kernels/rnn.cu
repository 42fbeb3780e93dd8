// LSTM / LSTMCell / GRUCell gate updates on the GPU: the pointwise part of one recurrent step, after the caller's
// GEMMs (kernels/rnn.h has the split).
//
// One thread per (b, j) of the [B, Hd] state. The thread reads the G gate pre-activations of column j (G loads
// Hd elements apart, each coalesced across the warp, which runs over consecutive j), computes in float and
// writes its own state element, so in-place updates (c over c_prev, h_out over h) are race-free: no thread reads
// an element another thread writes. These kernels move a few hundred KB per step and sit between two GEMMs; they
// are latency-bound, so the launch shape only has to keep every warp busy for small Hd (rows of a block share
// the warps when Hd < 256) and cover any B without a grid limit (grid-stride loops in both dimensions).
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/element_convert.cuh"
#include "kernels/trace.h"
#include "kernels/rnn.h"

namespace vqa::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpSize = 32;
constexpr int64_t kMaxGridX = int64_t{1} << 16;  // grid-stride beyond: 2^16 blocks already fill any GPU
constexpr int64_t kMaxGridY = 65535;             // the hardware limit of gridDim.y
constexpr int kLstmGates = 4;                    // i, f, g, o
constexpr int kGruGates = 3;                     // r, z, n

struct Launch {
    dim3 grid;
    dim3 block;
};

// Threads along j (a multiple of the warp size, at most kThreads), the rest of the block along b.
Launch state_launch(int64_t batch, int64_t hidden) {
    const int64_t warps_x = std::min<int64_t>((hidden + kWarpSize - 1) / kWarpSize, kThreads / kWarpSize);
    Launch l;
    l.block = dim3(static_cast<unsigned>(warps_x * kWarpSize), static_cast<unsigned>(kThreads / (warps_x * kWarpSize)));
    l.grid = dim3(static_cast<unsigned>(std::min<int64_t>((hidden + l.block.x - 1) / l.block.x, kMaxGridX)),
                  static_cast<unsigned>(std::min<int64_t>((batch + l.block.y - 1) / l.block.y, kMaxGridY)));
    return l;
}

__device__ __forceinline__ float sigmoid(float v) {
    return 1.0f / (1.0f + expf(-v));  // v -> -inf: expf overflows to inf and the result is 0, not NaN
}

// Element k·Hd + j of a [G·Hd] bias, or 0 when there is none.
template <typename T>
__device__ __forceinline__ float bias_at(const T* bias, int64_t index) {
    return bias != nullptr ? to_float(bias[index]) : 0.0f;
}

// The gate pre-activations of one step with G gates, as both cells read them: raw pointers and strides
// (RnnGatesParams resolved on the host by gate_inputs).
template <typename T>
struct GateInputs {
    const T* gx;       // [B, G·Hd], rows gx_stride apart
    const T* gh;       // [B, G·Hd], rows gh_stride apart (LSTM: or null)
    const T* bias_ih;  // [G·Hd] or null
    const T* bias_hh;  // [G·Hd] or null
    int64_t batch;     // B
    int64_t hidden;    // Hd
    int64_t gx_stride;
    int64_t gh_stride;
    int64_t h_stride;  // of the T state rows: h (LSTM), h and h_out (GRU)
};

template <typename T>
GateInputs<T> gate_inputs(
    const RnnGatesParams& p, int gates, const T* gx, const T* gh, const T* bias_ih, const T* bias_hh) {
    return {gx, gh, bias_ih, bias_hh, p.batch, p.hidden, p.gx_stride(gates), p.gh_stride(gates), p.h_stride()};
}

// One LSTM step: its inputs and the state it updates.
template <typename T>
struct LstmArgs {
    GateInputs<T> in;
    const float* c_prev;  // [B, Hd] or null (may alias c)
    float* c;             // [B, Hd]
    T* h;                 // [B, Hd], rows in.h_stride apart
};

template <typename T>
__global__ void __launch_bounds__(kThreads) lstm_gates_kernel(LstmArgs<T> a) {
    const GateInputs<T> inputs = a.in;
    const int64_t hd = inputs.hidden;
    for (int64_t b = int64_t{blockIdx.y} * blockDim.y + threadIdx.y; b < inputs.batch;
         b += int64_t{gridDim.y} * blockDim.y) {
        const T* gx = inputs.gx + b * inputs.gx_stride;
        const T* gh = inputs.gh != nullptr ? inputs.gh + b * inputs.gh_stride : nullptr;
        for (int64_t j = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; j < hd; j += int64_t{gridDim.x} * blockDim.x) {
            float pre[kLstmGates];
#pragma unroll
            for (int k = 0; k < kLstmGates; ++k) {
                const int64_t col = k * hd + j;
                // The CPU reference's order: (x·W_ihᵀ + b_ih) + h·W_hhᵀ, then + b_hh.
                float v = to_float(gx[col]) + bias_at(inputs.bias_ih, col);
                if (gh != nullptr) {
                    v += to_float(gh[col]);
                }
                pre[k] = v + bias_at(inputs.bias_hh, col);
            }
            const int64_t s = b * hd + j;
            const float c_old = a.c_prev != nullptr ? a.c_prev[s] : 0.0f;  // read before c (may alias) is written
            const float c_new = sigmoid(pre[1]) * c_old + sigmoid(pre[0]) * tanhf(pre[2]);
            a.c[s] = c_new;
            a.h[b * inputs.h_stride + j] = from_float<T>(sigmoid(pre[3]) * tanhf(c_new));
        }
    }
}

// One GRU step: its inputs and the state it updates.
template <typename T>
struct GruArgs {
    GateInputs<T> in;
    const T* h;  // [B, Hd], rows in.h_stride apart (may alias h_out)
    T* h_out;    // [B, Hd], rows in.h_stride apart
};

template <typename T>
__global__ void __launch_bounds__(kThreads) gru_gates_kernel(GruArgs<T> a) {
    const GateInputs<T> inputs = a.in;
    const int64_t hd = inputs.hidden;
    for (int64_t b = int64_t{blockIdx.y} * blockDim.y + threadIdx.y; b < inputs.batch;
         b += int64_t{gridDim.y} * blockDim.y) {
        const T* gx = inputs.gx + b * inputs.gx_stride;
        const T* gh = inputs.gh + b * inputs.gh_stride;
        for (int64_t j = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; j < hd; j += int64_t{gridDim.x} * blockDim.x) {
            // (x·W_iᵀ + b_i·) and (h·W_hᵀ + b_h·) are formed apart, as the CPU reference does, then summed.
            float in[kGruGates];
            float hid[kGruGates];
#pragma unroll
            for (int k = 0; k < kGruGates; ++k) {
                const int64_t col = k * hd + j;
                in[k] = to_float(gx[col]) + bias_at(inputs.bias_ih, col);
                hid[k] = to_float(gh[col]) + bias_at(inputs.bias_hh, col);
            }
            const float r = sigmoid(in[0] + hid[0]);
            const float z = sigmoid(in[1] + hid[1]);
            const float n = tanhf(in[2] + r * hid[2]);
            const int64_t s = b * inputs.h_stride + j;
            const float h_prev = to_float(a.h[s]);  // read before h_out (which may alias h) is written
            a.h_out[s] = from_float<T>((1.0f - z) * n + z * h_prev);
        }
    }
}

}  // namespace

template <typename T>
void lstm_gates(const RnnGatesParams& params,
                const T* gx,
                const T* gh,
                const T* bias_ih,
                const T* bias_hh,
                const float* c_prev,
                float* c,
                T* h,
                cudaStream_t stream) {
    const TraceRange range("lstm_gates", stream);
    check_lstm_gates_args(params, gx, c, h, "lstm_gates");
    if (params.batch == 0) {
        return;
    }
    const LstmArgs<T> args{gate_inputs(params, kLstmGates, gx, gh, bias_ih, bias_hh), c_prev, c, h};
    const Launch l = state_launch(params.batch, params.hidden);
    lstm_gates_kernel<T><<<l.grid, l.block, 0, stream>>>(args);
    VQA_CUDA_CHECK_LAUNCH(stream);
}

template <typename T>
void gru_gates(const RnnGatesParams& params,
               const T* gx,
               const T* gh,
               const T* bias_ih,
               const T* bias_hh,
               const T* h,
               T* h_out,
               cudaStream_t stream) {
    const TraceRange range("gru_gates", stream);
    check_gru_gates_args(params, gx, gh, h, h_out, "gru_gates");
    if (params.batch == 0) {
        return;
    }
    const GruArgs<T> args{gate_inputs(params, kGruGates, gx, gh, bias_ih, bias_hh), h, h_out};
    const Launch l = state_launch(params.batch, params.hidden);
    gru_gates_kernel<T><<<l.grid, l.block, 0, stream>>>(args);
    VQA_CUDA_CHECK_LAUNCH(stream);
}

#define VQA_DETAIL_INSTANTIATE_RNN_GATES(T)                                                                          \
    template void lstm_gates<T>(const RnnGatesParams&, const T*, const T*, const T*, const T*, const float*, float*, \
                                T*, cudaStream_t);                                                                   \
    template void gru_gates<T>(const RnnGatesParams&, const T*, const T*, const T*, const T*, const T*, T*,          \
                               cudaStream_t);
VQA_DETAIL_INSTANTIATE_RNN_GATES(float)
VQA_DETAIL_INSTANTIATE_RNN_GATES(__half)
VQA_DETAIL_INSTANTIATE_RNN_GATES(__nv_bfloat16)
#undef VQA_DETAIL_INSTANTIATE_RNN_GATES

}  // namespace vqa::cuda

// Fused head projection on the GPU: a tiled "NT" GEMM y = x · Wᵀ (both operands K-contiguous) whose epilogue adds
// the bias, applies the group's scale and writes each column straight into its [B, H, L, Dh] output.
//
// One CTA computes a kBlockM × kBlockN tile of y. The x and W tiles of a K step are staged in shared memory,
// double-buffered: the copy of step k + 1 (cp.async, 16-byte chunks, zero-filled past M, N and K) overlaps the
// math of step k. Rows are padded by 16 bytes, which keeps the WMMA fragment loads and the SIMT float4 reads
// free of bank conflicts and every row 16-byte aligned for cp.async. When K, the x row stride or a base pointer
// is not 16-byte aligned, the same tiles are filled element by element instead.
//  - fp16/bf16: 4 warps (2 × 2), each a 32 × 32 warp tile of 2 × 2 WMMA 16×16×16 fragments, float accumulators.
//  - fp32: 256 threads, each a 4 × 4 micro-tile (rows ty + 16·i, columns tx + 16·j), float4 reads along K.
// The epilogue goes through shared memory (the accumulators as a float tile) so that each thread then writes
// 16 contiguous bytes of one head row.
#include <cstdint>
#include <mma.h>
#include <type_traits>

#include <cuda_pipeline.h>

#include "kernels/cuda_check.h"
#include "kernels/element_convert.cuh"
#include "kernels/trace.h"
#include "kernels/qkv_projection.h"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "qkv_projection.cu needs sm_80 or newer (bf16 tensor cores, cp.async): set VQA_CUDA_ARCHITECTURES"
#endif

namespace vqa::cuda {
namespace {

constexpr int kBlockM = 64;
constexpr int kBlockN = 64;
constexpr int kStages = 2;
constexpr int kWordBytes = 16;
constexpr int kOutPitch = kBlockN + 4;  // float epilogue tile row pitch: 16-byte rows, WMMA-storable (ldm % 4)

// Tile shape and thread count per element type: tensor cores for 16-bit types, CUDA cores for float.
template <typename T>
struct GemmTile {
    static constexpr int kBlockK = 32;  // two WMMA k-steps
    static constexpr int kThreads = 128;
};
template <>
struct GemmTile<float> {
    static constexpr int kBlockK = 16;  // four float4 steps
    static constexpr int kThreads = 256;
};

template <typename T>
struct TileLayout {
    static constexpr int kVec = kWordBytes / static_cast<int>(sizeof(T));  // elements per 16-byte chunk
    static constexpr int kBlockK = GemmTile<T>::kBlockK;
    static constexpr int kPitch = kBlockK + kVec;                     // padded row: [kBlockK + 16 bytes]
    static constexpr int kStageElems = (kBlockM + kBlockN) * kPitch;  // x tile rows, then W tile rows
    static constexpr int kPipelineBytes = kStages * kStageElems * static_cast<int>(sizeof(T));
    static constexpr int kEpilogueBytes = kBlockM * kOutPitch * static_cast<int>(sizeof(float));
    static constexpr int kSharedBytes = kPipelineBytes > kEpilogueBytes ? kPipelineBytes : kEpilogueBytes;
    static_assert(kBlockK % kVec == 0, "a tile row is whole 16-byte chunks");
    // WMMA fragments start every 16 rows and every 16 columns: those offsets must be 32-byte aligned.
    static_assert((16 * kPitch * sizeof(T)) % 32 == 0 && (16 * sizeof(T)) % 32 == 0 || sizeof(T) == 4,
                  "WMMA needs 32-byte aligned fragment starts");
    static_assert((kBlockM * kPitch * sizeof(T)) % 32 == 0 && (kStageElems * sizeof(T)) % 32 == 0,
                  "every stage and its W tile start 32-byte aligned");
};

template <typename T>
struct ProjectionArgs {
    const T* x;                    // [M, K], rows x_stride apart
    const T* weight;               // [N, K]
    const T* bias;                 // [N] or null
    T* out[kMaxProjectionGroups];  // group g: [B, H, L, Dh]
    float scales[kMaxProjectionGroups];
    int64_t x_stride;
    int rows;            // M = B·L
    int cols;            // N = G·H·Dh
    int depth;           // K
    int seq_len;         // L
    int num_heads;       // H
    int head_dim;        // Dh
    bool vector_loads;   // K, x_stride and both base pointers 16-byte aligned: cp.async 16-byte chunks
    bool vector_stores;  // Dh a multiple of kVec and every output 16-byte aligned
};

// Fills stage buffers `tile` ([kBlockM + kBlockN][kPitch]: x rows m0.., then W rows n0..) with K columns k0..;
// anything past M, N or K becomes zero.
template <typename T>
__device__ void load_stage(T* tile, const ProjectionArgs<T>& a, int m0, int n0, int k0) {
    using L = TileLayout<T>;
    constexpr int kThreads = GemmTile<T>::kThreads;
    if (a.vector_loads) {
        constexpr int kChunksPerRow = L::kBlockK / L::kVec;
        for (int i = threadIdx.x; i < (kBlockM + kBlockN) * kChunksPerRow; i += kThreads) {
            const int r = i / kChunksPerRow;
            const int c = (i - r * kChunksPerRow) * L::kVec;
            const bool is_x = r < kBlockM;
            const int src_row = is_x ? m0 + r : n0 + (r - kBlockM);
            const bool valid = (is_x ? src_row < a.rows : src_row < a.cols) && k0 + c < a.depth;
            const T* src = is_x ? a.x + src_row * a.x_stride : a.weight + int64_t{src_row} * a.depth;
            // An invalid chunk reads nothing (all 16 bytes zero-filled); its source only has to be a valid address.
            __pipeline_memcpy_async(tile + r * L::kPitch + c, valid ? src + k0 + c : a.x, kWordBytes,
                                    valid ? 0 : kWordBytes);
        }
    } else {
        for (int i = threadIdx.x; i < (kBlockM + kBlockN) * L::kBlockK; i += kThreads) {
            const int r = i / L::kBlockK;
            const int c = i - r * L::kBlockK;
            const bool is_x = r < kBlockM;
            const int src_row = is_x ? m0 + r : n0 + (r - kBlockM);
            const bool valid = (is_x ? src_row < a.rows : src_row < a.cols) && k0 + c < a.depth;
            const T* src = is_x ? a.x + src_row * a.x_stride : a.weight + int64_t{src_row} * a.depth;
            tile[r * L::kPitch + c] = valid ? src[k0 + c] : from_float<T>(0.0f);
        }
    }
}

// fp16/bf16: this warp's 32 × 32 piece of the tile on tensor cores.
template <typename T>
struct WmmaMath {
    static constexpr int kFrag = 16;
    using FragA = nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, kFrag, kFrag, kFrag, T, nvcuda::wmma::row_major>;
    // W tile rows are output columns, K-contiguous: as the [K, N] operand that is column-major.
    using FragB = nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, kFrag, kFrag, kFrag, T, nvcuda::wmma::col_major>;
    using FragC = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, kFrag, kFrag, kFrag, float>;

    FragC acc[2][2];
    int warp_m;  // warp tile origin inside the CTA tile
    int warp_n;

    __device__ void init() {
        const int warp = static_cast<int>(threadIdx.x / 32);
        warp_m = (warp / 2) * 32;
        warp_n = (warp % 2) * 32;
#pragma unroll
        for (int i = 0; i < 2; ++i) {
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                nvcuda::wmma::fill_fragment(acc[i][j], 0.0f);
            }
        }
    }
    __device__ void step(const T* tile) {
        using L = TileLayout<T>;
        const T* x_tile = tile;
        const T* w_tile = tile + kBlockM * L::kPitch;
#pragma unroll
        for (int kk = 0; kk < L::kBlockK; kk += kFrag) {
            FragA a[2];
            FragB b[2];
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                nvcuda::wmma::load_matrix_sync(a[i], x_tile + (warp_m + i * kFrag) * L::kPitch + kk, L::kPitch);
                nvcuda::wmma::load_matrix_sync(b[i], w_tile + (warp_n + i * kFrag) * L::kPitch + kk, L::kPitch);
            }
#pragma unroll
            for (int i = 0; i < 2; ++i) {
#pragma unroll
                for (int j = 0; j < 2; ++j) {
                    nvcuda::wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
                }
            }
        }
    }
    __device__ void store(float* out_tile) const {  // [kBlockM][kOutPitch]
#pragma unroll
        for (int i = 0; i < 2; ++i) {
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                nvcuda::wmma::store_matrix_sync(out_tile + (warp_m + i * kFrag) * kOutPitch + warp_n + j * kFrag,
                                                acc[i][j], kOutPitch, nvcuda::wmma::mem_row_major);
            }
        }
    }
};

// fp32: this thread's 4 × 4 outputs (rows ty + 16·i, columns tx + 16·j) on CUDA cores.
struct SimtMath {
    static constexpr int kMicro = 4;
    static constexpr int kSpread = 16;  // threads along each tile side
    float acc[kMicro][kMicro];
    int ty;
    int tx;

    __device__ void init() {
        ty = static_cast<int>(threadIdx.x) / kSpread;
        tx = static_cast<int>(threadIdx.x) % kSpread;
#pragma unroll
        for (int i = 0; i < kMicro; ++i) {
#pragma unroll
            for (int j = 0; j < kMicro; ++j) {
                acc[i][j] = 0.0f;
            }
        }
    }
    __device__ void step(const float* tile) {
        using L = TileLayout<float>;
        const float* x_tile = tile;
        const float* w_tile = tile + kBlockM * L::kPitch;
#pragma unroll
        for (int kk = 0; kk < L::kBlockK; kk += 4) {
            float4 a[kMicro];
            float4 b[kMicro];
#pragma unroll
            for (int i = 0; i < kMicro; ++i) {
                a[i] = *reinterpret_cast<const float4*>(x_tile + (ty + kSpread * i) * L::kPitch + kk);
                b[i] = *reinterpret_cast<const float4*>(w_tile + (tx + kSpread * i) * L::kPitch + kk);
            }
#pragma unroll
            for (int i = 0; i < kMicro; ++i) {
#pragma unroll
                for (int j = 0; j < kMicro; ++j) {
                    acc[i][j] = fmaf(a[i].x, b[j].x, acc[i][j]);
                    acc[i][j] = fmaf(a[i].y, b[j].y, acc[i][j]);
                    acc[i][j] = fmaf(a[i].z, b[j].z, acc[i][j]);
                    acc[i][j] = fmaf(a[i].w, b[j].w, acc[i][j]);
                }
            }
        }
    }
    __device__ void store(float* out_tile) const {  // [kBlockM][kOutPitch]
#pragma unroll
        for (int i = 0; i < kMicro; ++i) {
#pragma unroll
            for (int j = 0; j < kMicro; ++j) {
                out_tile[(ty + kSpread * i) * kOutPitch + tx + kSpread * j] = acc[i][j];
            }
        }
    }
};
static_assert(SimtMath::kMicro * SimtMath::kSpread == kBlockM && SimtMath::kMicro * SimtMath::kSpread == kBlockN,
              "the fp32 micro-tiles cover the CTA tile");
static_assert(SimtMath::kSpread * SimtMath::kSpread == GemmTile<float>::kThreads, "one micro-tile per thread");
static_assert(GemmTile<__half>::kThreads == 4 * 32, "four warps of 32 × 32 cover the 64 × 64 tile");

template <typename T>
using TileMath = std::conditional_t<std::is_same_v<T, float>, SimtMath, WmmaMath<T>>;

// Where column n of y goes: output group, and the offset of (h, e) inside a [B, H, L, Dh] tensor given the token.
struct ColumnTarget {
    int group;
    int64_t offset;  // ((b·H + h)·L + l)·Dh + e
};
template <typename T>
__device__ __forceinline__ ColumnTarget column_target(const ProjectionArgs<T>& a, int b, int l, int n) {
    const int group_cols = a.num_heads * a.head_dim;
    const int g = n / group_cols;
    const int within = n - g * group_cols;
    const int h = within / a.head_dim;
    const int e = within - h * a.head_dim;
    return {g, ((int64_t{b} * a.num_heads + h) * a.seq_len + l) * a.head_dim + e};
}

// Group g's output pointer and scale, chosen by selects: indexing the kernel parameter arrays with a runtime g
// would copy them to local memory.
template <typename T>
__device__ __forceinline__ T* group_output(const ProjectionArgs<T>& a, int g) {
    return g == 0 ? a.out[0] : (g == 1 ? a.out[1] : a.out[2]);
}
template <typename T>
__device__ __forceinline__ float group_scale(const ProjectionArgs<T>& a, int g) {
    return g == 0 ? a.scales[0] : (g == 1 ? a.scales[1] : a.scales[2]);
}

template <typename T>
__global__ void __launch_bounds__(GemmTile<T>::kThreads) head_projection_kernel(ProjectionArgs<T> args) {
    using L = TileLayout<T>;
    constexpr int kThreads = GemmTile<T>::kThreads;
    __shared__ __align__(128) unsigned char shared[L::kSharedBytes];
    T* stages = reinterpret_cast<T*>(shared);
    float* out_tile = reinterpret_cast<float*>(shared);  // reused once the main loop is over

    const int n0 = blockIdx.x * kBlockN;
    const int m0 = blockIdx.y * kBlockM;
    const int k_steps = (args.depth + L::kBlockK - 1) / L::kBlockK;

    TileMath<T> math;
    math.init();
    load_stage(stages, args, m0, n0, 0);
    __pipeline_commit();
    for (int step = 0; step < k_steps; ++step) {
        if (step + 1 < k_steps) {
            load_stage(stages + ((step + 1) % kStages) * L::kStageElems, args, m0, n0, (step + 1) * L::kBlockK);
        }
        __pipeline_commit();       // possibly empty: keeps "all but the newest group" meaning "step's tiles"
        __pipeline_wait_prior(1);  // this thread's copies of step are done...
        __syncthreads();           // ...and everyone else's
        math.step(stages + (step % kStages) * L::kStageElems);
        __syncthreads();  // the stage is free for the copy issued in the next iteration
    }
    math.store(out_tile);
    __syncthreads();

    // Epilogue: each thread takes 16-byte runs of a y row, which lie inside one head row because Dh is a multiple
    // of kVec whenever the vector path runs (otherwise every element is placed on its own).
    constexpr int kRunsPerRow = kBlockN / L::kVec;
    for (int i = threadIdx.x; i < kBlockM * kRunsPerRow; i += kThreads) {
        const int r = i / kRunsPerRow;
        const int c = (i - r * kRunsPerRow) * L::kVec;
        const int m = m0 + r;
        const int n = n0 + c;
        if (m >= args.rows || n >= args.cols) {
            continue;
        }
        const int b = m / args.seq_len;
        const int l = m - b * args.seq_len;
        const float* acc = out_tile + r * kOutPitch + c;
        if (args.vector_stores) {
            const ColumnTarget target = column_target(args, b, l, n);
            const float scale = group_scale(args, target.group);
            float values[L::kVec];
#pragma unroll
            for (int v = 0; v < L::kVec; ++v) {
                const float bias = args.bias != nullptr ? to_float(args.bias[n + v]) : 0.0f;
                values[v] = (acc[v] + bias) * scale;
            }
            *reinterpret_cast<uint4*>(group_output(args, target.group) + target.offset) = pack_word<T>(values);
        } else {
            for (int v = 0; v < L::kVec && n + v < args.cols; ++v) {
                const ColumnTarget target = column_target(args, b, l, n + v);
                const float bias = args.bias != nullptr ? to_float(args.bias[n + v]) : 0.0f;
                group_output(args, target.group)[target.offset] =
                    from_float<T>((acc[v] + bias) * group_scale(args, target.group));
            }
        }
    }
}

bool aligned16(const void* ptr) {
    return reinterpret_cast<uintptr_t>(ptr) % kWordBytes == 0;
}

template <typename T>
void head_projection_cuda(const HeadProjectionParams& p,
                          const T* x,
                          const T* weight,
                          const T* bias,
                          const HeadOutputs<T>& outputs,
                          cudaStream_t stream) {
    const TraceRange range("fused_qkv_projection", stream);
    check_head_projection_args(p, x, weight, outputs, "fused_qkv_projection");
    if (p.rows() == 0) {
        return;
    }
    constexpr int kMaxGridY = 65535;
    VQA_CHECK((p.rows() + kBlockM - 1) / kBlockM <= kMaxGridY, kInvalidArgument,
              "fused_qkv_projection: M = B·L = ", p.rows(), " exceeds ", int64_t{kMaxGridY} * kBlockM,
              " rows (grid limit); split the batch");
    constexpr int kVec = TileLayout<T>::kVec;
    ProjectionArgs<T> args{};
    args.x = x;
    args.weight = weight;
    args.bias = bias;
    args.vector_stores = p.head_dim % kVec == 0;
    for (int g = 0; g < kMaxProjectionGroups; ++g) {
        args.out[g] = g < p.num_groups ? outputs.group[g] : nullptr;
        args.scales[g] = p.scales[g];
        if (g < p.num_groups) {
            args.vector_stores = args.vector_stores && aligned16(outputs.group[g]);
        }
    }
    args.x_stride = p.x_stride();
    args.rows = static_cast<int>(p.rows());
    args.cols = static_cast<int>(p.cols());
    args.depth = p.in_features;
    args.seq_len = p.seq_len;
    args.num_heads = p.num_heads;
    args.head_dim = p.head_dim;
    args.vector_loads = p.in_features % kVec == 0 && args.x_stride % kVec == 0 && aligned16(x) && aligned16(weight);

    const dim3 grid(static_cast<unsigned>((args.cols + kBlockN - 1) / kBlockN),
                    static_cast<unsigned>((args.rows + kBlockM - 1) / kBlockM));
    head_projection_kernel<T><<<grid, GemmTile<T>::kThreads, 0, stream>>>(args);
    VQA_CUDA_CHECK_LAUNCH(stream);
}

}  // namespace

template <typename T>
void fused_qkv_projection(const HeadProjectionParams& params,
                          const T* x,
                          std::add_pointer_t<const T> weight,
                          std::add_pointer_t<const T> bias,
                          const HeadOutputs<T>& outputs,
                          cudaStream_t stream) {
    head_projection_cuda(params, x, weight, bias, outputs, stream);
}

// The element types the header promises.
#define VQA_INSTANTIATE_QKV_PROJECTION(T)                                                            \
    template void fused_qkv_projection<T>(const HeadProjectionParams&, const T*, const T*, const T*, \
                                          const HeadOutputs<T>&, cudaStream_t);
VQA_INSTANTIATE_QKV_PROJECTION(float)
VQA_INSTANTIATE_QKV_PROJECTION(__half)
VQA_INSTANTIATE_QKV_PROJECTION(__nv_bfloat16)
#undef VQA_INSTANTIATE_QKV_PROJECTION

}  // namespace vqa::cuda

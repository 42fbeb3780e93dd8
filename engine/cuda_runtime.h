// What the CUDA backend is built on: RAII device and pinned buffers, the workspace arena, the per-engine context
// (device, stream, cuBLASLt and cuDNN handles) and the GEMM every linear layer goes through. Internal to engine/.
//
//   gpu::CudaContext ctx(/*device=*/0);
//   gpu::DeviceBuffer<float> w = gpu::DeviceBuffer<float>::upload(host_weights, ctx.stream());
//   ctx.arena().reset();                                   // at the start of every pass
//   float* y = ctx.arena().take<float>(rows * out);         // no cudaMalloc once the arena has its size
//   gpu::linear(ctx, {x, rows, in}, w.data(), bias, y, out, gpu::Epilogue::kBiasRelu);
#pragma once

#if !VQA_WITH_CUDA
#error "engine/cuda_runtime.h is part of the CUDA backend: include it only in builds with VQA_WITH_CUDA=1"
#endif

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <utility>
#include <vector>

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include "kernels/cuda_check.h"

namespace vqa::gpu {

// ---- Buffers ----

// Owns `count` elements of device memory. Move-only; copying goes through upload()/download().
template <typename T>
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(std::size_t count) : count_(count) {
        if (count > 0) {
            void* ptr = nullptr;
            VQA_CUDA_CHECK(cudaMalloc(&ptr, count * sizeof(T)));
            data_ = static_cast<T*>(ptr);
        }
    }
    // A buffer holding a copy of `host` (synchronous: `host` may be freed on return, and work on any stream may
    // read the buffer).
    static DeviceBuffer upload(const std::vector<T>& host) {
        DeviceBuffer buffer(host.size());
        if (!host.empty()) {
            VQA_CUDA_CHECK(cudaMemcpy(buffer.data_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
            // From pageable memory cudaMemcpy returns once the data is staged; the DMA to the buffer may still be in
            // flight on the legacy stream, which the engine's non-blocking streams do not wait for.
            VQA_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));
        }
        return buffer;
    }
    ~DeviceBuffer() { release(); }
    DeviceBuffer(DeviceBuffer&& other) noexcept
        : data_(std::exchange(other.data_, nullptr)), count_(std::exchange(other.count_, 0)) {}
    DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
        if (this != &other) {
            release();
            data_ = std::exchange(other.data_, nullptr);
            count_ = std::exchange(other.count_, 0);
        }
        return *this;
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    T* data() { return data_; }
    const T* data() const { return data_; }
    std::size_t size() const { return count_; }
    bool empty() const { return count_ == 0; }

private:
    void release() noexcept {
        if (data_ != nullptr) {
            VQA_CUDA_CHECK_NOTHROW(cudaFree(data_));
            data_ = nullptr;
        }
    }

    T* data_ = nullptr;
    std::size_t count_ = 0;
};

// Page-locked host memory, for asynchronous copies that overlap host work. Grow-only: reserve() keeps the
// contents only up to the old size. Move-only.
class PinnedBuffer {
public:
    PinnedBuffer() = default;
    ~PinnedBuffer();
    PinnedBuffer(PinnedBuffer&& other) noexcept
        : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
    PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;
    PinnedBuffer(const PinnedBuffer&) = delete;
    PinnedBuffer& operator=(const PinnedBuffer&) = delete;

    // At least `bytes` bytes; reallocates (cudaHostAlloc) only when larger than before.
    void* reserve(std::size_t bytes);
    std::size_t capacity() const { return bytes_; }
    const void* data() const { return data_; }

private:
    void* data_ = nullptr;
    std::size_t bytes_ = 0;
};

// The scratch of a forward pass: a bump allocator over device memory, sized by the first passes and then
// fixed. take() hands out 256-byte aligned slices; reset() at the start of a pass makes them all free again.
// When a pass needs more than the arena holds, a further chunk is allocated for the rest of that pass (earlier
// slices stay valid), and the next reset() replaces all chunks by one of the largest total seen: the engine
// runs a pass at the largest batch at load, so answering never calls cudaMalloc afterwards. Not thread-safe:
// one arena per context, used under the context's lock.
class DeviceArena {
public:
    static constexpr std::size_t kAlignment = 256;

    DeviceArena() = default;
    ~DeviceArena();
    DeviceArena(const DeviceArena&) = delete;
    DeviceArena& operator=(const DeviceArena&) = delete;

    void reset();

    template <typename T>
    T* take(int64_t count) {
        return static_cast<T*>(take_bytes(static_cast<std::size_t>(count) * sizeof(T)));
    }
    void* take_bytes(std::size_t bytes);

    std::size_t capacity() const;                           // bytes held in all chunks
    std::size_t high_water() const { return high_water_; }  // largest bytes taken in one pass
    int chunk_count() const { return static_cast<int>(chunks_.size()); }
    // Changes whenever reset() replaces the chunks: device addresses taken before (a captured CUDA graph's) are
    // then freed memory.
    uint64_t generation() const { return generation_; }

private:
    struct Chunk {
        char* data = nullptr;
        std::size_t size = 0;
        std::size_t used = 0;
    };
    void free_chunks() noexcept;

    std::vector<Chunk> chunks_;
    std::size_t taken_ = 0;  // bytes taken in the current pass (with alignment)
    std::size_t high_water_ = 0;
    uint64_t generation_ = 0;
};

// ---- Context ----

// Sets the current device for a scope and restores the previous one.
class DeviceScope {
public:
    explicit DeviceScope(int device);
    ~DeviceScope();
    DeviceScope(const DeviceScope&) = delete;
    DeviceScope& operator=(const DeviceScope&) = delete;

private:
    int previous_ = 0;
    bool changed_ = false;
};

// Element types of the tensors a GEMM reads and writes.
enum class DataType { kFp32, kFp16, kBf16 };

template <typename T>
constexpr DataType data_type_of();
template <>
constexpr DataType data_type_of<float>() {
    return DataType::kFp32;
}
template <>
constexpr DataType data_type_of<__half>() {
    return DataType::kFp16;
}
template <>
constexpr DataType data_type_of<__nv_bfloat16>() {
    return DataType::kBf16;
}

// What cuBLASLt adds after the product: nothing, the bias (one per output column), or the bias and a ReLU.
enum class Epilogue { kNone, kBias, kBiasRelu };

// One device, one stream, the library handles and the arena of an engine. Passes on one context run one at a
// time: take lock() for the whole pass.
class CudaContext {
public:
    explicit CudaContext(int device);
    ~CudaContext();
    CudaContext(const CudaContext&) = delete;
    CudaContext& operator=(const CudaContext&) = delete;

    int device() const { return device_; }
    cudaStream_t stream() const { return stream_; }
    cublasLtHandle_t cublas_lt() const { return lt_; }
    // Created on first use, so that models without a convolutional trunk do not need cuDNN at run time.
    cudnnHandle_t cudnn();
    DeviceArena& arena() { return arena_; }
    std::unique_lock<std::mutex> lock() { return std::unique_lock<std::mutex>(mutex_); }
    void synchronize() const;

    // y = x · Wᵀ (+ bias) (ReLU), see gpu::linear: x and W in `type`, y and the bias in `out_type`. Plans
    // (descriptors + the heuristic's algorithm) are cached per shape, types, alignment and epilogue.
    void gemm(DataType type,
              DataType out_type,
              int64_t rows,
              int64_t in,
              int64_t out,
              const void* x,
              int64_t x_ld,
              const void* weight,
              const void* bias,
              void* y,
              int64_t y_ld,
              Epilogue epilogue,
              float beta);

private:
    struct GemmPlan;
    using GemmKey = std::tuple<int, int64_t, int64_t, int64_t, int64_t, int64_t, int, bool>;  // types|alignment, ...
    GemmPlan& plan_for(const GemmKey& key);

    int device_ = 0;
    cudaStream_t stream_ = nullptr;
    cublasLtHandle_t lt_ = nullptr;
    cudnnHandle_t cudnn_ = nullptr;
    void* lt_workspace_ = nullptr;
    std::size_t lt_workspace_bytes_ = 0;
    DeviceArena arena_;
    std::map<GemmKey, std::unique_ptr<GemmPlan>> plans_;
    std::mutex mutex_;
};

// A row-major matrix view: `rows` rows of `cols` elements, `ld` elements apart (0 = cols).
template <typename T>
struct MatrixView {
    const T* data = nullptr;
    int64_t rows = 0;
    int64_t cols = 0;
    int64_t ld = 0;
};

// y [rows, out] = epilogue(x [rows, in] · Wᵀ + bias) (+ y when accumulate), W [out, in] in PyTorch's nn.Linear
// layout, bias [out] in T or null (kNone). fp32 runs in full fp32 (no TF32), fp16/bf16 accumulate in fp32.
// y's rows are y_ld elements apart (0 = out), so a GEMM can write a column slice of a wider buffer.
template <typename T>
void linear(CudaContext& ctx,
            const MatrixView<T>& x,
            const T* weight,
            const T* bias,
            T* y,
            int64_t out,
            Epilogue epilogue,
            int64_t y_ld = 0,
            bool accumulate = false) {
    ctx.gemm(data_type_of<T>(), data_type_of<T>(), x.rows, x.cols, out, x.data, x.ld == 0 ? x.cols : x.ld, weight, bias,
             y, y_ld == 0 ? out : y_ld, epilogue, accumulate ? 1.0f : 0.0f);
}

// As linear(), with y and the bias in float while x and W are T (fp32 accumulation either way): for outputs that
// stay fp32 in every precision (the pooling logits, the classifier's logits).
template <typename T>
void linear_to_float(CudaContext& ctx,
                     const MatrixView<T>& x,
                     const T* weight,
                     const float* bias,
                     float* y,
                     int64_t out,
                     Epilogue epilogue,
                     int64_t y_ld = 0) {
    ctx.gemm(data_type_of<T>(), DataType::kFp32, x.rows, x.cols, out, x.data, x.ld == 0 ? x.cols : x.ld, weight, bias,
             y, y_ld == 0 ? out : y_ld, epilogue, 0.0f);
}

// Copies `count` device elements to the host (waits for the context's stream).
template <typename T>
std::vector<T> download(CudaContext& ctx, const T* data, int64_t count) {
    std::vector<T> host(static_cast<std::size_t>(count));
    if (count > 0) {
        VQA_CUDA_CHECK(
            cudaMemcpyAsync(host.data(), data, host.size() * sizeof(T), cudaMemcpyDeviceToHost, ctx.stream()));
        ctx.synchronize();
    }
    return host;
}

}  // namespace vqa::gpu

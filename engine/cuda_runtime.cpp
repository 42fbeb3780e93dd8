// The CUDA backend's foundation (engine/cuda_runtime.h): pinned buffers, the arena, the context and its GEMMs.
#include "engine/cuda_runtime.h"

#include <algorithm>

#include "kernels/check.h"

namespace vqa::gpu {
namespace {

// 32 MiB: what cuBLAS recommends for Hopper, and enough for every heuristic choice seen on our shapes.
constexpr std::size_t kCublasLtWorkspaceBytes = std::size_t{32} << 20;
constexpr std::size_t kMaxPointerAlignment = 256;

std::size_t align_up(std::size_t bytes, std::size_t alignment) {
    return (bytes + alignment - 1) / alignment * alignment;
}

// Largest power of two (up to 256) that divides the address: cuBLASLt only picks kernels that can read it.
std::size_t pointer_alignment(const void* ptr) {
    const auto address = reinterpret_cast<uintptr_t>(ptr);
    std::size_t alignment = kMaxPointerAlignment;
    while (alignment > 1 && address % alignment != 0) {
        alignment /= 2;
    }
    return alignment;
}

cudaDataType_t cuda_type(DataType type) {
    switch (type) {
        case DataType::kFp16:
            return CUDA_R_16F;
        case DataType::kBf16:
            return CUDA_R_16BF;
        case DataType::kFp32:
            break;
    }
    return CUDA_R_32F;
}

cublasLtEpilogue_t lt_epilogue(Epilogue epilogue) {
    switch (epilogue) {
        case Epilogue::kBias:
            return CUBLASLT_EPILOGUE_BIAS;
        case Epilogue::kBiasRelu:
            return CUBLASLT_EPILOGUE_RELU_BIAS;
        case Epilogue::kNone:
            break;
    }
    return CUBLASLT_EPILOGUE_DEFAULT;
}

}  // namespace

// ---- PinnedBuffer ----

PinnedBuffer::~PinnedBuffer() {
    if (data_ != nullptr) {
        VQA_CUDA_CHECK_NOTHROW(cudaFreeHost(data_));
    }
}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept {
    if (this != &other) {
        if (data_ != nullptr) {
            VQA_CUDA_CHECK_NOTHROW(cudaFreeHost(data_));
        }
        data_ = std::exchange(other.data_, nullptr);
        bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
}

void* PinnedBuffer::reserve(std::size_t bytes) {
    if (bytes <= bytes_) {
        return data_;
    }
    void* grown = nullptr;
    VQA_CUDA_CHECK(cudaHostAlloc(&grown, bytes, cudaHostAllocDefault));
    if (data_ != nullptr) {
        VQA_CUDA_CHECK_NOTHROW(cudaFreeHost(data_));
    }
    data_ = grown;
    bytes_ = bytes;
    return data_;
}

// ---- DeviceArena ----

DeviceArena::~DeviceArena() {
    free_chunks();
}

void DeviceArena::free_chunks() noexcept {
    for (Chunk& chunk : chunks_) {
        VQA_CUDA_CHECK_NOTHROW(cudaFree(chunk.data));
    }
    chunks_.clear();
}

std::size_t DeviceArena::capacity() const {
    std::size_t total = 0;
    for (const Chunk& chunk : chunks_) {
        total += chunk.size;
    }
    return total;
}

void DeviceArena::reset() {
    if (chunks_.size() > 1) {
        // The last pass outgrew the first chunk: replace them all by one chunk that holds the whole pass. cudaFree
        // waits for the device, so no kernel of the last pass still uses them.
        free_chunks();
        ++generation_;
        Chunk chunk;
        chunk.size = high_water_;
        VQA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&chunk.data), chunk.size));
        chunks_.push_back(chunk);
    }
    for (Chunk& chunk : chunks_) {
        chunk.used = 0;
    }
    taken_ = 0;
}

void* DeviceArena::take_bytes(std::size_t bytes) {
    const std::size_t size = align_up(std::max<std::size_t>(bytes, 1), kAlignment);
    if (chunks_.empty() || chunks_.back().size - chunks_.back().used < size) {
        // A new chunk for the rest of this pass: at least what this pass has taken so far, so that growth is
        // geometric. The counters move only once the allocation has succeeded, so that a pass that ran out of
        // device memory does not make the next reset() ask for the size that failed.
        Chunk chunk;
        chunk.size = std::max(size, align_up(taken_ + size, kAlignment));
        VQA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&chunk.data), chunk.size));
        chunks_.push_back(chunk);
    }
    Chunk& chunk = chunks_.back();
    void* slice = chunk.data + chunk.used;
    chunk.used += size;
    taken_ += size;
    high_water_ = std::max(high_water_, taken_);
    return slice;
}

// ---- DeviceScope ----

DeviceScope::DeviceScope(int device) {
    VQA_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) {
        VQA_CUDA_CHECK(cudaSetDevice(device));
        changed_ = true;
    }
}

DeviceScope::~DeviceScope() {
    if (changed_) {
        VQA_CUDA_CHECK_NOTHROW(cudaSetDevice(previous_));
    }
}

// ---- CudaContext ----

struct CudaContext::GemmPlan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr;  // the weight
    cublasLtMatrixLayout_t b = nullptr;  // x
    cublasLtMatrixLayout_t c = nullptr;  // y (also D)
    cublasLtMatmulAlgo_t algo{};

    GemmPlan() = default;
    GemmPlan(const GemmPlan&) = delete;
    GemmPlan& operator=(const GemmPlan&) = delete;
    ~GemmPlan() {
        // Destroy calls only fail for invalid handles; nothing to report from a destructor.
        if (c != nullptr) {
            cublasLtMatrixLayoutDestroy(c);
        }
        if (b != nullptr) {
            cublasLtMatrixLayoutDestroy(b);
        }
        if (a != nullptr) {
            cublasLtMatrixLayoutDestroy(a);
        }
        if (op != nullptr) {
            cublasLtMatmulDescDestroy(op);
        }
    }
};

CudaContext::CudaContext(int device) : device_(device) {
    int count = 0;
    VQA_CUDA_CHECK(cudaGetDeviceCount(&count));
    VQA_CHECK(device >= 0 && device < count, kInvalidArgument, "CUDA device ", device, " does not exist (", count,
              " device(s) present)");
    DeviceScope scope(device_);
    VQA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    VQA_CUBLAS_CHECK(cublasLtCreate(&lt_));
    VQA_CUDA_CHECK(cudaMalloc(&lt_workspace_, kCublasLtWorkspaceBytes));
    lt_workspace_bytes_ = kCublasLtWorkspaceBytes;
}

CudaContext::~CudaContext() {
    // Not a DeviceScope: a destructor must not throw.
    int previous = device_;
    if (cudaGetDevice(&previous) == cudaSuccess && previous != device_) {
        VQA_CUDA_CHECK_NOTHROW(cudaSetDevice(device_));
    }
    if (stream_ != nullptr) {
        VQA_CUDA_CHECK_NOTHROW(cudaStreamSynchronize(stream_));
    }
    plans_.clear();
    if (cudnn_ != nullptr) {
        cudnnDestroy(cudnn_);
    }
    if (lt_ != nullptr) {
        cublasLtDestroy(lt_);
    }
    if (lt_workspace_ != nullptr) {
        VQA_CUDA_CHECK_NOTHROW(cudaFree(lt_workspace_));
    }
    if (stream_ != nullptr) {
        VQA_CUDA_CHECK_NOTHROW(cudaStreamDestroy(stream_));
    }
    if (previous != device_) {
        VQA_CUDA_CHECK_NOTHROW(cudaSetDevice(previous));
    }
}

cudnnHandle_t CudaContext::cudnn() {
    if (cudnn_ == nullptr) {
        VQA_CUDNN_CHECK(cudnnCreate(&cudnn_));
        VQA_CUDNN_CHECK(cudnnSetStream(cudnn_, stream_));
    }
    return cudnn_;
}

void CudaContext::synchronize() const {
    VQA_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

CudaContext::GemmPlan& CudaContext::plan_for(const GemmKey& key) {
    auto found = plans_.find(key);
    if (found != plans_.end()) {
        return *found->second;
    }
    const auto [type_and_alignment, rows, in, out, x_ld, y_ld, epilogue_index, accumulate] = key;
    static_cast<void>(accumulate);
    const auto type = static_cast<DataType>(type_and_alignment & 0xf);
    const auto out_type = static_cast<DataType>((type_and_alignment >> 4) & 0xf);
    const auto alignment = static_cast<uint32_t>(type_and_alignment >> 8);
    const cudaDataType_t data_type = cuda_type(type);
    const cudaDataType_t out_data_type = cuda_type(out_type);
    auto plan = std::make_unique<GemmPlan>();
    // fp32 stays fp32 (CUBLAS_COMPUTE_32F never uses TF32): the CUDA backend must match the CPU to 1e-4.
    VQA_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t transpose = CUBLAS_OP_T;
    const cublasOperation_t no_transpose = CUBLAS_OP_N;
    VQA_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose)));
    VQA_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSB, &no_transpose, sizeof(no_transpose)));
    const cublasLtEpilogue_t epilogue = lt_epilogue(static_cast<Epilogue>(epilogue_index));
    VQA_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    if (epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
        VQA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &out_data_type,
                                                        sizeof(out_data_type)));
    }
    // Row-major y [rows, out] = x [rows, in] · Wᵀ is column-major yᵀ [out, rows] = W (stored as [in, out] column-
    // major, transposed) · xᵀ (stored as [in, rows] column-major).
    VQA_CUBLAS_CHECK(
        cublasLtMatrixLayoutCreate(&plan->a, data_type, static_cast<uint64_t>(in), static_cast<uint64_t>(out), in));
    VQA_CUBLAS_CHECK(
        cublasLtMatrixLayoutCreate(&plan->b, data_type, static_cast<uint64_t>(in), static_cast<uint64_t>(rows), x_ld));
    VQA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->c, out_data_type, static_cast<uint64_t>(out),
                                                static_cast<uint64_t>(rows), y_ld));

    cublasLtMatmulPreference_t preference = nullptr;
    VQA_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
    cublasLtMatmulHeuristicResult_t result{};
    int returned = 0;
    const cublasStatus_t status = [&] {
        cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                                &lt_workspace_bytes_, sizeof(lt_workspace_bytes_));
        for (const cublasLtMatmulPreferenceAttributes_t attribute :
             {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
              CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
            if (s == CUBLAS_STATUS_SUCCESS) {
                s = cublasLtMatmulPreferenceSetAttribute(preference, attribute, &alignment, sizeof(alignment));
            }
        }
        if (s != CUBLAS_STATUS_SUCCESS) {
            return s;
        }
        return cublasLtMatmulAlgoGetHeuristic(lt_, plan->op, plan->a, plan->b, plan->c, plan->c, preference, 1, &result,
                                              &returned);
    }();
    cublasLtMatmulPreferenceDestroy(preference);
    VQA_CUBLAS_CHECK(status);
    VQA_CHECK(returned > 0, kUnsupported, "cuBLASLt has no algorithm for a GEMM of ", rows, "x", in, " by ", out, "x",
              in);
    plan->algo = result.algo;
    return *plans_.emplace(key, std::move(plan)).first->second;
}

void CudaContext::gemm(DataType type,
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
                       float beta) {
    VQA_CHECK(rows >= 0 && in >= 1 && out >= 1 && x_ld >= in && y_ld >= out, kInvalidArgument,
              "gemm: expected rows >= 0, in >= 1, out >= 1, x_ld >= in, y_ld >= out, got rows=", rows, " in=", in,
              " out=", out, " x_ld=", x_ld, " y_ld=", y_ld);
    VQA_CHECK(epilogue == Epilogue::kNone || bias != nullptr, kInvalidArgument, "gemm: a bias epilogue needs a bias");
    if (rows == 0) {
        return;
    }
    // Pointer alignment is part of the plan: a heuristic choice for 256-byte aligned operands may need them.
    const std::size_t alignment =
        std::min({pointer_alignment(x), pointer_alignment(weight), pointer_alignment(y),
                  epilogue == Epilogue::kNone ? kMaxPointerAlignment : pointer_alignment(bias)});
    const GemmKey key{static_cast<int>(type) | (static_cast<int>(out_type) << 4) | static_cast<int>(alignment << 8),
                      rows,
                      in,
                      out,
                      x_ld,
                      y_ld,
                      static_cast<int>(epilogue),
                      beta != 0.0f};
    GemmPlan& plan = plan_for(key);
    if (epilogue != Epilogue::kNone) {
        VQA_CUBLAS_CHECK(
            cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    }
    const float alpha = 1.0f;
    VQA_CUBLAS_CHECK(cublasLtMatmul(lt_, plan.op, &alpha, weight, plan.a, x, plan.b, &beta, y, plan.c, y, plan.c,
                                    &plan.algo, lt_workspace_, lt_workspace_bytes_, stream_));
}

}  // namespace vqa::gpu

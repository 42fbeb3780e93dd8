// The convolutional image trunks on cuDNN's legacy (descriptor) API (engine/cuda_image_encoder.h).
#include "engine/cuda_image_encoder.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "kernels/check.h"
#include "kernels/trace.h"

namespace vqa::gpu::detail {
namespace {

// The most workspace one convolution of the largest batch may take (cuDNN's FFT algorithms can ask for gigabytes;
// implicit-GEMM ones need none, so a cap never leaves a convolution without an algorithm).
constexpr std::size_t kWorkspaceCapBytes = std::size_t{256} << 20;
// cuDNN's vectorised kernels read 16-byte aligned tensors; the arena and cudaMalloc give 256.
constexpr uintptr_t kPointerAlignment = 16;
// A CNN block keeps its conv output and its pooled map; a residual block its input, the identity (or downsample),
// the map being convolved and the next one.
constexpr int kCnnBuffers = 2;
constexpr int kResnetBuffers = 4;
constexpr int kMaxBuffers = std::max(kCnnBuffers, kResnetBuffers);

// ---- Owned cuDNN descriptors ----

template <typename Struct, cudnnStatus_t (*Destroy)(Struct*)>
struct DescriptorDeleter {
    // A destroy call fails only for an invalid descriptor: nothing to report.
    void operator()(Struct* descriptor) const noexcept { Destroy(descriptor); }
};
using TensorDescriptor =
    std::unique_ptr<cudnnTensorStruct, DescriptorDeleter<cudnnTensorStruct, cudnnDestroyTensorDescriptor>>;
using FilterDescriptor =
    std::unique_ptr<cudnnFilterStruct, DescriptorDeleter<cudnnFilterStruct, cudnnDestroyFilterDescriptor>>;
using ConvolutionDescriptor =
    std::unique_ptr<cudnnConvolutionStruct,
                    DescriptorDeleter<cudnnConvolutionStruct, cudnnDestroyConvolutionDescriptor>>;
using PoolingDescriptor =
    std::unique_ptr<cudnnPoolingStruct, DescriptorDeleter<cudnnPoolingStruct, cudnnDestroyPoolingDescriptor>>;
using ActivationDescriptor =
    std::unique_ptr<cudnnActivationStruct, DescriptorDeleter<cudnnActivationStruct, cudnnDestroyActivationDescriptor>>;

// A feature map of one image: [C, H, W].
struct MapShape {
    int64_t channels = 0;
    int64_t height = 0;
    int64_t width = 0;

    int64_t elements() const { return channels * height * width; }
    bool operator==(const MapShape& other) const {
        return channels == other.channels && height == other.height && width == other.width;
    }
};

// Sizes were checked against INT_MAX at construction, so every narrowing here is exact.
int to_int(int64_t value) {
    return static_cast<int>(value);
}

cudnnDataType_t cudnn_type(DataType type) {
    switch (type) {
        case DataType::kFp16:
            return CUDNN_DATA_HALF;
        case DataType::kBf16:
            return CUDNN_DATA_BFLOAT16;
        case DataType::kFp32:
            break;
    }
    return CUDNN_DATA_FLOAT;
}

std::size_t element_bytes(DataType type) {
    return type == DataType::kFp32 ? sizeof(float) : sizeof(__half);
}

// `values` rounded to nearest in the element type, on the device.
DeviceBuffer<unsigned char> upload_as(const std::vector<float>& values, DataType type) {
    std::vector<unsigned char> bytes(values.size() * element_bytes(type));
    for (std::size_t i = 0; i < values.size(); ++i) {
        unsigned char* dst = bytes.data() + i * element_bytes(type);
        if (type == DataType::kFp16) {
            const __half h = __float2half_rn(values[i]);
            std::memcpy(dst, &h, sizeof(h));
        } else if (type == DataType::kBf16) {
            const __nv_bfloat16 b = __float2bfloat16_rn(values[i]);
            std::memcpy(dst, &b, sizeof(b));
        } else {
            std::memcpy(dst, &values[i], sizeof(float));
        }
    }
    return DeviceBuffer<unsigned char>::upload(bytes);
}

// [n, C, H, W], dense NCHW.
TensorDescriptor nchw_tensor(cudnnDataType_t type, int64_t n, const MapShape& shape) {
    cudnnTensorDescriptor_t raw = nullptr;
    VQA_CUDNN_CHECK(cudnnCreateTensorDescriptor(&raw));
    TensorDescriptor descriptor(raw);
    VQA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(raw, CUDNN_TENSOR_NCHW, type, to_int(n), to_int(shape.channels),
                                               to_int(shape.height), to_int(shape.width)));
    return descriptor;
}

// The same logical [n, C, H, W] stored as [n, H·W, C]: element (b, c, y, x) at b·H·W·C + (y·W + x)·C + c.
TensorDescriptor token_major_tensor(cudnnDataType_t type, int64_t n, const MapShape& shape) {
    cudnnTensorDescriptor_t raw = nullptr;
    VQA_CUDNN_CHECK(cudnnCreateTensorDescriptor(&raw));
    TensorDescriptor descriptor(raw);
    const int64_t c = shape.channels;
    VQA_CUDNN_CHECK(cudnnSetTensor4dDescriptorEx(raw, type, to_int(n), to_int(c), to_int(shape.height),
                                                 to_int(shape.width), to_int(shape.elements()), 1,
                                                 to_int(shape.width * c), to_int(c)));
    return descriptor;
}

void check_aligned(const void* ptr, const char* name) {
    VQA_CHECK(reinterpret_cast<uintptr_t>(ptr) % kPointerAlignment == 0, kInvalidArgument,
              "CudaImageTrunk::encode: ", name, " must be ", kPointerAlignment,
              "-byte aligned (arena slices and cudaMalloc are)");
}

// One convolution with its folded BatchNorm, on the device.
struct Conv {
    std::string name;  // the trace (NVTX) range
    int64_t kernel = 1;
    int64_t stride = 1;
    int64_t pad = 0;
    MapShape in;
    MapShape out;
    bool relu = true;                    // false: a residual block's downsample (conv + BN only)
    DeviceBuffer<unsigned char> weight;  // [Cout, Cin, k, k] in the element type
    DeviceBuffer<unsigned char> bias;    // [Cout] in the element type
    FilterDescriptor filter;
    TensorDescriptor bias_shape;  // [1, Cout, 1, 1]
};

// PyTorch MaxPool2d (floor mode). Every pool of the trunks follows a ReLU: whatever cuDNN pads with (it leaves
// padding out of a max), a window's maximum over values >= 0 is the same.
struct Pool {
    std::string name;
    MapShape in;
    MapShape out;
    PoolingDescriptor descriptor;
};

// Indices into Impl::convs.
struct Block {
    std::vector<std::size_t> convs;  // ReLU after each; the last one also adds the identity first
    bool has_downsample = false;
    std::size_t downsample = 0;
};

// Where a pass's work goes: cuDNN's handle, bound to the context's stream, and that stream (for the trace).
struct Launch {
    cudnnHandle_t cudnn = nullptr;
    cudaStream_t stream = nullptr;
};

// A convolution planned for one batch size.
struct ConvPlan {
    TensorDescriptor x;
    TensorDescriptor y;
    ConvolutionDescriptor conv;
    cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
    std::size_t workspace_bytes = 0;
    bool fused = true;  // cleared for good when cuDNN has no fused kernel for this convolution
};

// Everything a pass of one batch size needs, made on its first use.
struct PassPlan {
    std::vector<ConvPlan> convs;  // as Impl::convs
    std::vector<TensorDescriptor> pool_in;
    std::vector<TensorDescriptor> pool_out;
    TensorDescriptor output_nchw;     // [Bi, C, h, w]
    TensorDescriptor output_tokens;   // [Bi, h·w, C]
    std::size_t workspace_bytes = 0;  // the largest of its convolutions'
};

}  // namespace

struct CudnnImageTrunk::Impl {
    DataType type = DataType::kFp32;
    cudnnDataType_t data_type = CUDNN_DATA_FLOAT;
    ConvFusion fusion = ConvFusion::kFused;
    ImageEncoder kind = ImageEncoder::kCnn;
    int64_t max_images = 0;
    MapShape input;
    MapShape output;
    // CNN: block i is convs[i] then pools[i]. ResNet: convs[0] is the stem, pools[0] follows it, then per block its
    // downsample (if any) and its convolutions.
    std::vector<Conv> convs;
    std::vector<Pool> pools;
    std::vector<Block> blocks;
    int buffer_count = 0;
    int64_t buffer_elements = 0;  // per image: the largest feature map
    ActivationDescriptor relu;
    std::size_t workspace_limit = kWorkspaceCapBytes;
    mutable std::vector<std::unique_ptr<PassPlan>> plans;  // by batch size

    std::size_t add_conv(const cpu_layers::FoldedConv& f, const MapShape& in, bool relu_after, std::string name);
    void add_pool(int64_t kernel, int64_t stride, int64_t pad, std::string name);

    PassPlan& plan_for(cudnnHandle_t handle, int64_t count) const;
    ConvPlan plan_conv(cudnnHandle_t handle, const Conv& conv, int64_t count) const;

    void run_conv(const Launch& launch,
                  PassPlan& pass,
                  std::size_t index,
                  const void* x,           // x: [Bi, Cin, H, W]
                  const void* residual,    // residual: [Bi, Cout, Ho, Wo] or null
                  void* y,                 // y: [Bi, Cout, Ho, Wo]
                  void* workspace) const;  // workspace: pass.workspace_bytes
    void run_pool(const Launch& launch,
                  const PassPlan& pass,
                  std::size_t index,
                  const void* x,   // x: [Bi, C, H, W]
                  void* y) const;  // y: [Bi, C, Ho, Wo]
    const void* run_cnn(const Launch& launch,
                        PassPlan& pass,
                        const void* pixels,    // pixels: [Bi, 3, H, W]
                        void* const* buffers,  // buffers: buffer_count of [Bi, buffer_elements]
                        void* workspace) const;
    const void* run_resnet(const Launch& launch,
                           PassPlan& pass,
                           const void* pixels,    // pixels: [Bi, 3, H, W]
                           void* const* buffers,  // buffers: buffer_count of [Bi, buffer_elements]
                           void* workspace) const;
};

std::size_t CudnnImageTrunk::Impl::add_conv(const cpu_layers::FoldedConv& f,
                                            const MapShape& in,
                                            bool relu_after,
                                            std::string name) {
    VQA_CHECK(f.in_channels == in.channels && f.kernel >= 1 && f.stride >= 1 && f.pad >= 0, kInternal, name,
              ": a convolution of ", f.in_channels, " input channels (kernel ", f.kernel, ", stride ", f.stride,
              ", pad ", f.pad, ") on a map of ", in.channels, " channels");
    VQA_CHECK(static_cast<int64_t>(f.weight.size()) == f.out_channels * f.in_channels * f.kernel * f.kernel &&
                  (f.bias.empty() || static_cast<int64_t>(f.bias.size()) == f.out_channels),
              kInternal, name, ": folded weight or bias of the wrong size");
    Conv conv;
    conv.name = std::move(name);
    conv.kernel = f.kernel;
    conv.stride = f.stride;
    conv.pad = f.pad;
    conv.in = in;
    conv.out = {f.out_channels, (in.height + 2 * f.pad - f.kernel) / f.stride + 1,
                (in.width + 2 * f.pad - f.kernel) / f.stride + 1};
    VQA_CHECK(in.height + 2 * f.pad >= f.kernel && in.width + 2 * f.pad >= f.kernel, kModelFormat, conv.name,
              ": the input map ", in.height, "x", in.width, " is smaller than the kernel; image.input is too small");
    conv.relu = relu_after;
    conv.weight = upload_as(f.weight, type);
    // Every folded convolution has a bias (BatchNorm's shift, or the CNN conv's own); none would mean zeros.
    conv.bias = upload_as(f.bias.empty() ? std::vector<float>(static_cast<std::size_t>(f.out_channels)) : f.bias, type);

    cudnnFilterDescriptor_t filter = nullptr;
    VQA_CUDNN_CHECK(cudnnCreateFilterDescriptor(&filter));
    conv.filter.reset(filter);
    VQA_CUDNN_CHECK(cudnnSetFilter4dDescriptor(filter, data_type, CUDNN_TENSOR_NCHW, to_int(f.out_channels),
                                               to_int(f.in_channels), to_int(f.kernel), to_int(f.kernel)));
    conv.bias_shape = nchw_tensor(data_type, 1, {f.out_channels, 1, 1});
    convs.push_back(std::move(conv));
    return convs.size() - 1;
}

void CudnnImageTrunk::Impl::add_pool(int64_t kernel, int64_t stride, int64_t pad, std::string name) {
    Pool pool;
    pool.name = std::move(name);
    pool.in = convs.back().out;
    VQA_CHECK(pool.in.height + 2 * pad >= kernel && pool.in.width + 2 * pad >= kernel, kModelFormat, pool.name,
              ": the input map ", pool.in.height, "x", pool.in.width, " is smaller than the ", kernel, "x", kernel,
              " window; image.input is too small");
    pool.out = {pool.in.channels, (pool.in.height + 2 * pad - kernel) / stride + 1,
                (pool.in.width + 2 * pad - kernel) / stride + 1};
    cudnnPoolingDescriptor_t raw = nullptr;
    VQA_CUDNN_CHECK(cudnnCreatePoolingDescriptor(&raw));
    pool.descriptor.reset(raw);
    // NaN propagates, as in PyTorch's max pooling.
    VQA_CUDNN_CHECK(cudnnSetPooling2dDescriptor(raw, CUDNN_POOLING_MAX, CUDNN_PROPAGATE_NAN, to_int(kernel),
                                                to_int(kernel), to_int(pad), to_int(pad), to_int(stride),
                                                to_int(stride)));
    pools.push_back(std::move(pool));
}

ConvPlan CudnnImageTrunk::Impl::plan_conv(cudnnHandle_t handle, const Conv& conv, int64_t count) const {
    ConvPlan plan;
    plan.x = nchw_tensor(data_type, count, conv.in);
    plan.y = nchw_tensor(data_type, count, conv.out);
    cudnnConvolutionDescriptor_t raw = nullptr;
    VQA_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&raw));
    plan.conv.reset(raw);
    // PyTorch's Conv2d is a cross-correlation; products are summed in fp32 for every element type.
    VQA_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(raw, to_int(conv.pad), to_int(conv.pad), to_int(conv.stride),
                                                    to_int(conv.stride), 1, 1, CUDNN_CROSS_CORRELATION,
                                                    CUDNN_DATA_FLOAT));
    // fp32: CUDNN_DEFAULT_MATH would allow TF32 tensor cores (10-bit mantissa) on Ampere and later.
    const bool fp32 = type == DataType::kFp32;
    VQA_CUDNN_CHECK(cudnnSetConvolutionMathType(raw, fp32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH));
    int n = 0, c = 0, h = 0, w = 0;
    VQA_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(raw, plan.x.get(), conv.filter.get(), &n, &c, &h, &w));
    VQA_CHECK(n == count && c == conv.out.channels && h == conv.out.height && w == conv.out.width, kInternal, conv.name,
              ": cuDNN computes a ", n, "x", c, "x", h, "x", w, " output, expected ", count, "x", conv.out.channels,
              "x", conv.out.height, "x", conv.out.width);

    // cuDNN's heuristic rather than cudnnFind: a batch size first met mid-pass must not stop to time every algorithm
    // (and timing needs scratch beyond the arena). Its best algorithm whose workspace fits the limit, else the one
    // needing the least.
    int max_algos = 0;
    VQA_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(handle, &max_algos));
    std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<std::size_t>(std::max(max_algos, 1)));
    int returned = 0;
    VQA_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(handle, plan.x.get(), conv.filter.get(), raw, plan.y.get(),
                                                           static_cast<int>(perf.size()), &returned, perf.data()));
    const cudnnConvolutionFwdAlgoPerf_t* best = nullptr;
    const cudnnConvolutionFwdAlgoPerf_t* smallest = nullptr;
    for (int i = 0; i < returned; ++i) {
        const cudnnConvolutionFwdAlgoPerf_t& p = perf[static_cast<std::size_t>(i)];
        // fp32 takes only FMA kernels: a tensor-op result (TF32, or fp16 by conversion) would cost it ~1e-3.
        const bool fma = p.mathType == CUDNN_FMA_MATH || p.mathType == CUDNN_DEFAULT_MATH;
        const bool usable = p.status == CUDNN_STATUS_SUCCESS && (!fp32 || fma);
        if (!usable) {
            continue;
        }
        if (best == nullptr && p.memory <= workspace_limit) {
            best = &p;
        }
        if (smallest == nullptr || p.memory < smallest->memory) {
            smallest = &p;
        }
    }
    VQA_CHECK(smallest != nullptr, kUnsupported, conv.name, ": cuDNN has no forward algorithm for a ", count, "x",
              conv.in.channels, "x", conv.in.height, "x", conv.in.width, " input, ", conv.out.channels, " filters of ",
              conv.kernel, "x", conv.kernel, ", stride ", conv.stride, ", pad ", conv.pad);
    const cudnnConvolutionFwdAlgoPerf_t& chosen = best != nullptr ? *best : *smallest;
    plan.algo = chosen.algo;
    if (!fp32) {
        // The heuristic may have picked a non-tensor-core kernel for this shape; the descriptor must say so.
        VQA_CUDNN_CHECK(cudnnSetConvolutionMathType(raw, chosen.mathType));
    }
    VQA_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(handle, plan.x.get(), conv.filter.get(), raw, plan.y.get(),
                                                            plan.algo, &plan.workspace_bytes));
    plan.fused = fusion == ConvFusion::kFused;
    return plan;
}

PassPlan& CudnnImageTrunk::Impl::plan_for(cudnnHandle_t handle, int64_t count) const {
    std::unique_ptr<PassPlan>& slot = plans[static_cast<std::size_t>(count)];
    if (slot != nullptr) {
        return *slot;
    }
    auto pass = std::make_unique<PassPlan>();
    for (const Conv& conv : convs) {
        pass->convs.push_back(plan_conv(handle, conv, count));
        pass->workspace_bytes = std::max(pass->workspace_bytes, pass->convs.back().workspace_bytes);
    }
    for (const Pool& pool : pools) {
        pass->pool_in.push_back(nchw_tensor(data_type, count, pool.in));
        pass->pool_out.push_back(nchw_tensor(data_type, count, pool.out));
        int n = 0, c = 0, h = 0, w = 0;
        VQA_CUDNN_CHECK(
            cudnnGetPooling2dForwardOutputDim(pool.descriptor.get(), pass->pool_in.back().get(), &n, &c, &h, &w));
        VQA_CHECK(n == count && c == pool.out.channels && h == pool.out.height && w == pool.out.width, kInternal,
                  pool.name, ": cuDNN pools to ", n, "x", c, "x", h, "x", w, ", PyTorch's floor mode to ", count, "x",
                  pool.out.channels, "x", pool.out.height, "x", pool.out.width);
    }
    pass->output_nchw = nchw_tensor(data_type, count, output);
    pass->output_tokens = token_major_tensor(data_type, count, output);
    slot = std::move(pass);
    return *slot;
}

void CudnnImageTrunk::Impl::run_conv(const Launch& launch,
                                     PassPlan& pass,
                                     std::size_t index,
                                     const void* x,
                                     const void* residual,
                                     void* y,
                                     void* workspace) const {
    const Conv& conv = convs[index];
    ConvPlan& plan = pass.convs[index];
    VQA_CHECK(residual == nullptr || conv.relu, kInternal, conv.name, ": a residual add without the ReLU");
    TraceRange range(conv.name.c_str(), launch.stream);
    // Scaling factors are float for every element type but double.
    const float one = 1.0f;
    const float zero = 0.0f;
    if (conv.relu && plan.fused) {
        // y = relu(conv(x) + bias + alpha2·z): z is the identity (alpha2 = 1), or y itself with alpha2 = 0, which
        // cuDNN then does not read (as PyTorch's cudnn_convolution_relu does).
        const float alpha2 = residual != nullptr ? 1.0f : 0.0f;
        const cudnnStatus_t fused_status = cudnnConvolutionBiasActivationForward(
            launch.cudnn, &one, plan.x.get(), x, conv.filter.get(), conv.weight.data(), plan.conv.get(), plan.algo,
            workspace, plan.workspace_bytes, &alpha2, plan.y.get(), residual != nullptr ? residual : y,
            conv.bias_shape.get(), conv.bias.data(), relu.get(), plan.y.get(), y);
        // The check runs on the host before any launch: on "not supported" nothing was written.
        if (CUDNN_STATUS_CATEGORY(static_cast<int>(fused_status)) != static_cast<int>(CUDNN_STATUS_NOT_SUPPORTED)) {
            VQA_CUDNN_CHECK(fused_status);
            return;
        }
        plan.fused = false;
    }
    VQA_CUDNN_CHECK(cudnnConvolutionForward(launch.cudnn, &one, plan.x.get(), x, conv.filter.get(), conv.weight.data(),
                                            plan.conv.get(), plan.algo, workspace, plan.workspace_bytes, &zero,
                                            plan.y.get(), y));
    VQA_CUDNN_CHECK(cudnnAddTensor(launch.cudnn, &one, conv.bias_shape.get(), conv.bias.data(), &one, plan.y.get(), y));
    if (residual != nullptr) {
        VQA_CUDNN_CHECK(cudnnAddTensor(launch.cudnn, &one, plan.y.get(), residual, &one, plan.y.get(), y));
    }
    if (conv.relu) {
        VQA_CUDNN_CHECK(
            cudnnActivationForward(launch.cudnn, relu.get(), &one, plan.y.get(), y, &zero, plan.y.get(), y));
    }
}

void CudnnImageTrunk::Impl::run_pool(
    const Launch& launch, const PassPlan& pass, std::size_t index, const void* x, void* y) const {
    TraceRange range(pools[index].name.c_str(), launch.stream);
    const float one = 1.0f;
    const float zero = 0.0f;
    VQA_CUDNN_CHECK(cudnnPoolingForward(launch.cudnn, pools[index].descriptor.get(), &one, pass.pool_in[index].get(), x,
                                        &zero, pass.pool_out[index].get(), y));
}

const void* CudnnImageTrunk::Impl::run_cnn(
    const Launch& launch, PassPlan& pass, const void* pixels, void* const* buffers, void* workspace) const {
    const void* x = pixels;
    for (std::size_t i = 0; i < convs.size(); ++i) {
        run_conv(launch, pass, i, x, nullptr, buffers[0], workspace);
        run_pool(launch, pass, i, buffers[0], buffers[1]);
        x = buffers[1];
    }
    return x;
}

const void* CudnnImageTrunk::Impl::run_resnet(
    const Launch& launch, PassPlan& pass, const void* pixels, void* const* buffers, void* workspace) const {
    // A buffer holding none of the maps still needed; a block never needs more than kResnetBuffers at once.
    const auto free_buffer = [&](std::initializer_list<const void*> busy) {
        for (int i = 0; i < buffer_count; ++i) {
            if (std::find(busy.begin(), busy.end(), buffers[i]) == busy.end()) {
                return buffers[i];
            }
        }
        VQA_CHECK(false, kInternal, "CudaImageTrunk: every feature-map buffer is in use");
        return buffers[0];
    };
    run_conv(launch, pass, 0, pixels, nullptr, buffers[0], workspace);
    run_pool(launch, pass, 0, buffers[0], buffers[1]);
    const void* x = buffers[1];
    for (const Block& block : blocks) {
        const void* identity = x;
        if (block.has_downsample) {
            void* projected = free_buffer({x});
            run_conv(launch, pass, block.downsample, x, nullptr, projected, workspace);
            identity = projected;
        }
        const void* in = x;
        for (std::size_t i = 0; i + 1 < block.convs.size(); ++i) {
            void* y = free_buffer({x, identity, in});
            run_conv(launch, pass, block.convs[i], in, nullptr, y, workspace);
            in = y;
        }
        // relu(conv(in) + bias + identity), into a buffer that is neither operand
        void* out = free_buffer({x, identity, in});
        run_conv(launch, pass, block.convs.back(), in, identity, out, workspace);
        x = out;
    }
    return x;
}

CudnnImageTrunk::CudnnImageTrunk(
    CudaContext& ctx, const cpu_layers::ImageTrunk& trunk, int64_t max_images, DataType type, ConvFusion fusion)
    : impl_(std::make_unique<Impl>()) {
    VQA_CHECK(trunk.kind() != ImageEncoder::kRegions, kUnsupported,
              "CudaImageTrunk: the regions encoder has no convolutional trunk");
    VQA_CHECK(max_images >= 1, kInvalidArgument, "CudaImageTrunk: expected max_images >= 1, got ", max_images);
    DeviceScope scope(ctx.device());
    Impl& m = *impl_;
    m.type = type;
    m.data_type = cudnn_type(type);
    m.fusion = fusion;
    m.kind = trunk.kind();
    m.max_images = max_images;
    m.input = {3, trunk.input_height(), trunk.input_width()};
    VQA_CHECK(m.input.height >= 1 && m.input.width >= 1, kModelFormat, "CudaImageTrunk: image.input is ",
              m.input.height, "x", m.input.width);

    MapShape map = m.input;
    if (m.kind == ImageEncoder::kCnn) {
        m.buffer_count = kCnnBuffers;
        for (std::size_t i = 0; i < trunk.cnn_blocks().size(); ++i) {
            const std::string prefix = "trunk.cnn." + std::to_string(i);
            m.add_conv(trunk.cnn_blocks()[i], map, /*relu_after=*/true, prefix + ".conv");
            m.add_pool(2, 2, 0, prefix + ".pool");
            map = m.pools.back().out;
        }
    } else {
        m.buffer_count = kResnetBuffers;
        m.add_conv(trunk.stem(), map, /*relu_after=*/true, "trunk.conv1");
        m.add_pool(3, 2, 1, "trunk.maxpool");
        map = m.pools.back().out;
        for (std::size_t b = 0; b < trunk.residual_blocks().size(); ++b) {
            const cpu_layers::ResidualBlock& source = trunk.residual_blocks()[b];
            const std::string prefix = "trunk.block" + std::to_string(b);
            Block block;
            MapShape identity = map;
            if (source.has_downsample) {
                block.has_downsample = true;
                block.downsample = m.add_conv(source.downsample, map, /*relu_after=*/false, prefix + ".downsample");
                identity = m.convs.back().out;
            }
            MapShape in = map;
            for (std::size_t i = 0; i < source.convs.size(); ++i) {
                block.convs.push_back(
                    m.add_conv(source.convs[i], in, /*relu_after=*/true, prefix + ".conv" + std::to_string(i + 1)));
                in = m.convs.back().out;
            }
            VQA_CHECK(!block.convs.empty() && in == identity, kInternal, prefix, ": the block's output (", in.channels,
                      "x", in.height, "x", in.width, ") and its identity path (", identity.channels, "x",
                      identity.height, "x", identity.width, ") differ");
            m.blocks.push_back(std::move(block));
            map = in;
        }
    }
    m.output = map;
    VQA_CHECK(m.output.height * m.output.width == trunk.tokens() && m.output.channels == trunk.feature_dim(), kInternal,
              "CudaImageTrunk: expected ", trunk.tokens(), " tokens of ", trunk.feature_dim(), " channels, got ",
              m.output.height, "x", m.output.width, " of ", m.output.channels);
    for (const Conv& conv : m.convs) {
        m.buffer_elements = std::max(m.buffer_elements, conv.out.elements());
    }
    for (const Pool& pool : m.pools) {
        m.buffer_elements = std::max(m.buffer_elements, pool.out.elements());
    }
    // cuDNN's descriptors take int sizes and strides: the largest tensor of a max_images batch must fit.
    const int64_t largest = std::max(m.buffer_elements, m.input.elements());
    VQA_CHECK(largest <= INT_MAX / max_images, kInvalidArgument, "CudaImageTrunk: a batch of ", max_images,
              " images makes a feature map of ", largest * max_images, " elements, more than cuDNN's limit of ",
              INT_MAX, "; use max_images <= ", INT_MAX / largest);

    cudnnActivationDescriptor_t relu = nullptr;
    VQA_CUDNN_CHECK(cudnnCreateActivationDescriptor(&relu));
    m.relu.reset(relu);
    VQA_CUDNN_CHECK(cudnnSetActivationDescriptor(relu, CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN, 0.0));

    // The largest batch, planned now, sets the workspace every smaller batch must fit in: a pass at max_images
    // then takes the most arena memory there is to take.
    m.plans.resize(static_cast<std::size_t>(max_images) + 1);
    m.workspace_limit = m.plan_for(ctx.cudnn(), max_images).workspace_bytes;
}

CudnnImageTrunk::~CudnnImageTrunk() = default;
CudnnImageTrunk::CudnnImageTrunk(CudnnImageTrunk&&) noexcept = default;
CudnnImageTrunk& CudnnImageTrunk::operator=(CudnnImageTrunk&&) noexcept = default;

int64_t CudnnImageTrunk::max_images() const {
    return impl_->max_images;
}
int64_t CudnnImageTrunk::input_height() const {
    return impl_->input.height;
}
int64_t CudnnImageTrunk::input_width() const {
    return impl_->input.width;
}
int64_t CudnnImageTrunk::tokens() const {
    return impl_->output.height * impl_->output.width;
}
int64_t CudnnImageTrunk::feature_dim() const {
    return impl_->output.channels;
}

void CudnnImageTrunk::encode(CudaContext& ctx, const void* pixels, int64_t count, void* features) const {
    const Impl& m = *impl_;
    VQA_CHECK(count >= 0 && count <= m.max_images, kInvalidArgument,
              "CudaImageTrunk::encode: expected 0 <= count <= max_images = ", m.max_images, ", got ", count);
    if (count == 0) {
        return;
    }
    VQA_CHECK(pixels != nullptr && features != nullptr, kInvalidArgument,
              "CudaImageTrunk::encode: pixels and features must not be null");
    check_aligned(pixels, "pixels");
    check_aligned(features, "features");
    DeviceScope scope(ctx.device());
    TraceRange range("trunk.encode", ctx.stream());
    const Launch launch{ctx.cudnn(), ctx.stream()};
    PassPlan& pass = m.plan_for(launch.cudnn, count);

    DeviceArena& arena = ctx.arena();
    void* workspace =
        pass.workspace_bytes > 0 ? arena.take<unsigned char>(static_cast<int64_t>(pass.workspace_bytes)) : nullptr;
    void* buffers[kMaxBuffers] = {};
    const auto buffer_bytes = static_cast<int64_t>(count * m.buffer_elements * element_bytes(m.type));
    for (int i = 0; i < m.buffer_count; ++i) {
        buffers[i] = arena.take<unsigned char>(buffer_bytes);
    }
    const void* map = m.kind == ImageEncoder::kCnn ? m.run_cnn(launch, pass, pixels, buffers, workspace)
                                                   : m.run_resnet(launch, pass, pixels, buffers, workspace);
    // [Bi, C, h, w] -> [Bi, h·w, C]: token = y·w + x
    TraceRange tokens_range("trunk.tokens", launch.stream);
    const float one = 1.0f;
    const float zero = 0.0f;
    VQA_CUDNN_CHECK(cudnnTransformTensor(launch.cudnn, &one, pass.output_nchw.get(), map, &zero,
                                         pass.output_tokens.get(), features));
}

}  // namespace vqa::gpu::detail

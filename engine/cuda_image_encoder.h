// The convolutional image trunks of docs/model-format.md §4.2-§4.3 (small CNN; ResNet-18/34/50) on the GPU, with
// cuDNN. The CUDA counterpart of cpu_layers::ImageTrunk's grid encoders: the same folded weights (BatchNorm already
// in the convolution), the same architecture, the same token order. Internal to engine/.
//
//   gpu::CudaImageTrunk<__half> trunk(ctx, weights.trunk, /*max_images=*/64);   // at load: upload and plan
//   ctx.arena().reset();                                                          // per pass
//   trunk.encode(ctx, pixels, count, features);   // pixels [Bi, 3, H, W] -> features [Bi, Ni, C], token = y·w + x
//
// Layout: NCHW inside the trunk (cuDNN's most general layout for every algorithm and data type), and one
// cudnnTransformTensor at the end into NHWC, which is exactly the token-major [Bi, h·w, C] the adapter reads.
// Numerics: fp32 runs with CUDNN_FMA_MATH (no TF32: the CPU backend is matched to ~1e-5); fp16/bf16 on tensor
// cores with fp32 accumulation, every feature map stored in the element type.
#pragma once

#include <cstdint>
#include <memory>

#include "engine/cpu_image_encoder.h"
#include "engine/cuda_runtime.h"

namespace vqa::gpu {

// How a convolution followed by a ReLU (and, in a residual block, the identity add) runs.
enum class ConvFusion {
    // One cudnnConvolutionBiasActivationForward: relu(conv(x) + bias (+ identity)) with one rounding. Where cuDNN
    // reports a configuration unsupported, that convolution switches to kSeparate for good.
    kFused,
    // cudnnConvolutionForward, then cudnnAddTensor for the bias and the identity, then cudnnActivationForward.
    kSeparate,
};

namespace detail {

// The trunk with its element type as a run-time value; CudaImageTrunk<T> is the typed front. Move-only.
class CudnnImageTrunk {
public:
    CudnnImageTrunk(
        CudaContext& ctx, const cpu_layers::ImageTrunk& trunk, int64_t max_images, DataType type, ConvFusion fusion);
    ~CudnnImageTrunk();
    CudnnImageTrunk(CudnnImageTrunk&&) noexcept;
    CudnnImageTrunk& operator=(CudnnImageTrunk&&) noexcept;
    CudnnImageTrunk(const CudnnImageTrunk&) = delete;
    CudnnImageTrunk& operator=(const CudnnImageTrunk&) = delete;

    void encode(CudaContext& ctx,
                const void* pixels,     // pixels: [Bi, 3, H, W] in the element type
                int64_t count,          // Bi
                void* features) const;  // features: [Bi, Ni, C] in the element type

    int64_t max_images() const;
    int64_t input_height() const;  // H
    int64_t input_width() const;   // W
    int64_t tokens() const;        // Ni = h·w
    int64_t feature_dim() const;   // C

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace detail

// T: float, __half or __nv_bfloat16.
template <typename T>
class CudaImageTrunk {
public:
    // Uploads the folded weights of a grid trunk (converted to T) and plans every convolution for batches of
    // max_images; smaller batches are planned on first use (descriptors and the cuDNN heuristic's algorithm, with
    // no more workspace than the largest batch needs). kUnsupported for the regions encoder.
    CudaImageTrunk(CudaContext& ctx,
                   const cpu_layers::ImageTrunk& trunk,
                   int64_t max_images,
                   ConvFusion fusion = ConvFusion::kFused)
        : trunk_(ctx, trunk, max_images, data_type_of<T>(), fusion) {}

    // features = trunk(pixels) for 1 <= count <= max_images images (count 0 does nothing). Asynchronous on
    // ctx.stream(), no host synchronisation; the feature maps and cuDNN's workspace are taken from ctx.arena(),
    // which the caller resets per pass. A pass at max_images takes the most arena memory, so the arena never grows
    // for a smaller batch after it. Not thread-safe (plans are cached on first use): call under ctx.lock().
    void encode(CudaContext& ctx,
                const T* pixels,      // pixels: [Bi, 3, H, W], preprocessed (§4.1)
                int64_t count,        // Bi
                T* features) const {  // features: [Bi, Ni, C], token = y·w + x of the final h × w grid
        trunk_.encode(ctx, pixels, count, features);
    }

    int64_t max_images() const { return trunk_.max_images(); }
    int64_t input_height() const { return trunk_.input_height(); }  // H
    int64_t input_width() const { return trunk_.input_width(); }    // W
    int64_t tokens() const { return trunk_.tokens(); }              // Ni = h·w
    int64_t feature_dim() const { return trunk_.feature_dim(); }    // C

private:
    detail::CudnnImageTrunk trunk_;
};

}  // namespace vqa::gpu

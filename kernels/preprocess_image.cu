// Image preprocessing on the GPU: one thread per output pixel computes its three planes (the four taps' source
// positions and weights are shared by the channels), blocks of 32 × 8 pixels, one grid z slice per image.
//
// Bit-exactness with cpu::preprocess_image: every fp32 step is the reference's, in its order, through the _rn
// intrinsics (__fmul_rn and __fadd_rn are never contracted into an FMA, which would skip a rounding and move
// the result by an ulp; __fdiv_rn is the IEEE division the reference does), and the scales float(in) / float(out)
// are computed on the host exactly as the reference computes them.
#include <algorithm>
#include <cstdint>
#include <limits>

#include "kernels/cuda_check.h"
#include "kernels/element_convert.cuh"
#include "kernels/trace.h"
#include "kernels/preprocess_image.h"

namespace vqa::cuda {
namespace {

constexpr int kBlockX = 32;  // output columns per block: a warp writes 32 consecutive elements of each plane
constexpr int kBlockY = 8;   // output rows per block
constexpr int kThreads = kBlockX * kBlockY;

// One image of a launch, as the kernel needs it.
struct ImageArgs {
    int64_t offset;      // bytes from the staging buffer's start to pixel (0, 0)
    int64_t row_stride;  // bytes between rows
    int src_h;           // h
    int src_w;           // w
    float scale_h;       // float(h) / float(H)
    float scale_w;       // float(w) / float(W)
    bool resize;         // false when h == H and w == W: the reference copies, and so does the kernel
};

// Everything a launch needs besides the pointers; passed by value (about 1.3 KB of the 4 KB of launch arguments)
// and read in place as a __grid_constant__, so indexing images[] with blockIdx.z makes no local copy.
struct BatchArgs {
    ImageArgs images[kPreprocessImagesPerLaunch];
    int dst_h;         // H
    int dst_w;         // W
    int channel[3];    // source channel of output plane c: c for RGB, 2 − c for BGR
    float mean[3];     // per output plane
    float std_dev[3];  // per output plane, > 0
};

// One output index along one axis: the two source indices and the weight of the second, as
// cpu::preprocess_image's source_tap computes them.
struct Tap {
    int i0;
    int i1;
    float w1;
};

__device__ __forceinline__ Tap source_tap(int out_index, float scale, int in_size) {
    float src = __fsub_rn(__fmul_rn(scale, __fadd_rn(static_cast<float>(out_index), 0.5f)), 0.5f);
    src = src < 0.0f ? 0.0f : src;
    // src < in_size − 0.5 + 2^-8 for sides up to 2^16, so i0 <= in_size − 1 already; the min only guards the read
    const int i0 = min(static_cast<int>(src), in_size - 1);  // floor: src >= 0
    return {i0, min(i0 + 1, in_size - 1), __fsub_rn(src, static_cast<float>(i0))};
}

__device__ __forceinline__ float unit_value(uint8_t v) {
    return __fdiv_rn(static_cast<float>(v), 255.0f);
}

// torch's association: along x within each of the two rows, then along y.
__device__ __forceinline__ float bilinear(
    float top_left, float top_right, float bottom_left, float bottom_right, const Tap& ty, const Tap& tx) {
    const float wx0 = __fsub_rn(1.0f, tx.w1);
    const float wy0 = __fsub_rn(1.0f, ty.w1);
    const float top = __fadd_rn(__fmul_rn(wx0, top_left), __fmul_rn(tx.w1, top_right));
    const float bottom = __fadd_rn(__fmul_rn(wx0, bottom_left), __fmul_rn(tx.w1, bottom_right));
    return __fadd_rn(__fmul_rn(wy0, top), __fmul_rn(ty.w1, bottom));
}

template <typename T>
__global__ void __launch_bounds__(kThreads) preprocess_kernel(const __grid_constant__ BatchArgs args,
                                                              const uint8_t* __restrict__ staging,  // the images
                                                              T* __restrict__ dst) {                // [images, 3, H, W]
    const int ox = static_cast<int>(blockIdx.x) * kBlockX + static_cast<int>(threadIdx.x);
    const int oy = static_cast<int>(blockIdx.y) * kBlockY + static_cast<int>(threadIdx.y);
    if (ox >= args.dst_w || oy >= args.dst_h) {
        return;
    }
    const ImageArgs& image = args.images[blockIdx.z];
    const uint8_t* src = staging + image.offset;
    float v[3];
    if (!image.resize) {
        const uint8_t* pixel = src + oy * image.row_stride + 3 * ox;
#pragma unroll
        for (int c = 0; c < 3; ++c) {
            v[c] = unit_value(pixel[args.channel[c]]);
        }
    } else {
        const Tap ty = source_tap(oy, image.scale_h, image.src_h);
        const Tap tx = source_tap(ox, image.scale_w, image.src_w);
        const uint8_t* row0 = src + ty.i0 * image.row_stride;
        const uint8_t* row1 = src + ty.i1 * image.row_stride;
#pragma unroll
        for (int c = 0; c < 3; ++c) {
            const int ch = args.channel[c];
            v[c] = bilinear(unit_value(row0[3 * tx.i0 + ch]), unit_value(row0[3 * tx.i1 + ch]),
                            unit_value(row1[3 * tx.i0 + ch]), unit_value(row1[3 * tx.i1 + ch]), ty, tx);
        }
    }
    const int64_t plane = int64_t{args.dst_h} * args.dst_w;
    T* out = dst + int64_t{blockIdx.z} * 3 * plane + int64_t{oy} * args.dst_w + ox;
#pragma unroll
    for (int c = 0; c < 3; ++c) {
        out[c * plane] = from_float<T>(__fdiv_rn(__fsub_rn(v[c], args.mean[c]), args.std_dev[c]));
    }
}

// The batched form after its checks: one launch per kPreprocessImagesPerLaunch images.
template <typename T>
void launch_preprocess(const PreprocessBatchParams& p,
                       const PreprocessImageDesc* images,
                       const uint8_t* staging,
                       T* dst,
                       cudaStream_t stream) {
    BatchArgs args{};
    args.dst_h = static_cast<int>(p.dst_h);
    args.dst_w = static_cast<int>(p.dst_w);
    for (int c = 0; c < 3; ++c) {
        args.channel[c] = p.channel_order == cpu::ChannelOrder::kRgb ? c : 2 - c;
        args.mean[c] = p.mean[c];
        args.std_dev[c] = p.std[c];
    }
    const int64_t image_elems = 3 * p.dst_h * p.dst_w;
    const dim3 block(kBlockX, kBlockY);
    for (int64_t first = 0; first < p.count; first += kPreprocessImagesPerLaunch) {
        const int count = static_cast<int>(std::min<int64_t>(kPreprocessImagesPerLaunch, p.count - first));
        for (int i = 0; i < count; ++i) {
            const PreprocessImageDesc& desc = images[first + i];
            ImageArgs& image = args.images[i];
            image.offset = desc.offset;
            image.row_stride = desc.row_stride == 0 ? 3 * desc.width : desc.row_stride;
            image.src_h = static_cast<int>(desc.height);
            image.src_w = static_cast<int>(desc.width);
            // the reference's expression, evaluated in fp32 on the host
            image.scale_h = static_cast<float>(desc.height) / static_cast<float>(p.dst_h);
            image.scale_w = static_cast<float>(desc.width) / static_cast<float>(p.dst_w);
            image.resize = desc.height != p.dst_h || desc.width != p.dst_w;
        }
        const dim3 grid(static_cast<unsigned>((p.dst_w + kBlockX - 1) / kBlockX),
                        static_cast<unsigned>((p.dst_h + kBlockY - 1) / kBlockY), static_cast<unsigned>(count));
        preprocess_kernel<T><<<grid, block, 0, stream>>>(args, staging, dst + first * image_elems);
        VQA_CUDA_CHECK_LAUNCH(stream);
    }
}

}  // namespace

template <typename T>
void preprocess_images(const PreprocessBatchParams& params,
                       const PreprocessImageDesc* images,
                       const uint8_t* staging,
                       int64_t staging_bytes,
                       T* dst,
                       cudaStream_t stream) {
    const TraceRange range("preprocess_images", stream);
    check_preprocess_batch_args(params, images, staging, staging_bytes, dst, "preprocess_images");
    if (params.count == 0) {
        return;
    }
    launch_preprocess(params, images, staging, dst, stream);
}

template <typename T>
void preprocess_image(const cpu::PreprocessParams& params, const uint8_t* src, T* dst, cudaStream_t stream) {
    const TraceRange range("preprocess_image", stream);
    const cpu::PreprocessParams& p = params;
    VQA_CHECK(p.src_h >= 1 && p.src_w >= 1 && p.src_h <= kPreprocessMaxSide && p.src_w <= kPreprocessMaxSide,
              kInvalidArgument, "preprocess_image: expected a source size in [1, ", kPreprocessMaxSide, "], got ",
              p.src_h, "x", p.src_w);
    const int64_t row_bytes = 3 * p.src_w;
    const int64_t stride = p.src_row_stride == 0 ? row_bytes : p.src_row_stride;
    VQA_CHECK(stride >= row_bytes && stride <= (std::numeric_limits<int64_t>::max() - row_bytes) / p.src_h,
              kInvalidArgument, "preprocess_image: src_row_stride must be >= 3·w = ", row_bytes,
              " (or 0 for dense rows), got ", p.src_row_stride);
    PreprocessBatchParams batch;
    batch.count = 1;
    batch.dst_h = p.dst_h;
    batch.dst_w = p.dst_w;
    batch.channel_order = p.channel_order;
    std::copy(p.mean, p.mean + 3, batch.mean);
    std::copy(p.std, p.std + 3, batch.std);
    PreprocessImageDesc image;
    image.height = p.src_h;
    image.width = p.src_w;
    image.row_stride = stride;
    const int64_t src_bytes = (p.src_h - 1) * stride + row_bytes;
    check_preprocess_batch_args(batch, &image, src, src_bytes, dst, "preprocess_image");
    launch_preprocess(batch, &image, src, dst, stream);
}

template void preprocess_image<float>(const cpu::PreprocessParams&, const uint8_t*, float*, cudaStream_t);
template void preprocess_image<__half>(const cpu::PreprocessParams&, const uint8_t*, __half*, cudaStream_t);
template void preprocess_image<__nv_bfloat16>(const cpu::PreprocessParams&,
                                              const uint8_t*,
                                              __nv_bfloat16*,
                                              cudaStream_t);
template void preprocess_images<float>(
    const PreprocessBatchParams&, const PreprocessImageDesc*, const uint8_t*, int64_t, float*, cudaStream_t);
template void preprocess_images<__half>(
    const PreprocessBatchParams&, const PreprocessImageDesc*, const uint8_t*, int64_t, __half*, cudaStream_t);
template void preprocess_images<__nv_bfloat16>(
    const PreprocessBatchParams&, const PreprocessImageDesc*, const uint8_t*, int64_t, __nv_bfloat16*, cudaStream_t);

}  // namespace vqa::cuda

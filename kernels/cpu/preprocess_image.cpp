#include "kernels/cpu/preprocess_image.h"

#include <algorithm>

#include "kernels/check.h"

namespace vqa::cpu {
namespace {

// Below this many output elements a pass is faster than waking the OpenMP team.
constexpr int64_t kParallelMinElements = int64_t{1} << 14;

// Source position of one output index along one axis (torch's area_pixel_compute_source_index and
// compute_indices_weights_linear): i0, i1 = min(i0 + 1, in − 1), and the weight of i1.
struct Tap {
    int64_t i0;
    int64_t i1;
    float w1;
};

Tap source_tap(int64_t out_index, float scale, int64_t in_size) {
    const float src = std::max(scale * (static_cast<float>(out_index) + 0.5f) - 0.5f, 0.0f);
    const auto i0 = static_cast<int64_t>(src);  // floor: src >= 0
    return {i0, std::min(i0 + 1, in_size - 1), src - static_cast<float>(i0)};
}

// One output row oy of the bilinear resize of the plane that load(y, x) reads ([in_h, in_w]); store(x, v)
// writes output column x.
template <typename Load, typename Store>
void resize_row(Load load, Store store, int64_t oy, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w) {
    const Tap ty = source_tap(oy, static_cast<float>(in_h) / static_cast<float>(out_h), in_h);
    const float wy0 = 1.0f - ty.w1;
    const float scale_w = static_cast<float>(in_w) / static_cast<float>(out_w);
    for (int64_t ox = 0; ox < out_w; ++ox) {
        const Tap tx = source_tap(ox, scale_w, in_w);
        const float wx0 = 1.0f - tx.w1;
        // torch's association order: along x within each of the two rows, then along y
        const float top = wx0 * load(ty.i0, tx.i0) + tx.w1 * load(ty.i0, tx.i1);
        const float bottom = wx0 * load(ty.i1, tx.i0) + tx.w1 * load(ty.i1, tx.i1);
        store(ox, wy0 * top + ty.w1 * bottom);
    }
}

void check_sizes(const char* op, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w) {
    VQA_CHECK(in_h >= 1 && in_w >= 1 && out_h >= 1 && out_w >= 1, kInvalidArgument, op, ": expected sizes >= 1, got ",
              in_h, "x", in_w, " -> ", out_h, "x", out_w);
}

}  // namespace

void preprocess_image(const PreprocessParams& params, const uint8_t* src, float* dst) {
    const PreprocessParams& p = params;
    check_sizes("cpu::preprocess_image", p.src_h, p.src_w, p.dst_h, p.dst_w);
    const int64_t row_stride = p.src_row_stride == 0 ? 3 * p.src_w : p.src_row_stride;
    VQA_CHECK(row_stride >= 3 * p.src_w, kInvalidArgument,
              "cpu::preprocess_image: src_row_stride must be >= 3·w = ", 3 * p.src_w, " (or 0 for dense rows), got ",
              p.src_row_stride);
    for (int c = 0; c < 3; ++c) {
        VQA_CHECK(p.std[c] > 0.0f, kInvalidArgument, "cpu::preprocess_image: std[", c, "] must be > 0, got ", p.std[c]);
    }
    VQA_CHECK(src != nullptr && dst != nullptr, kInvalidArgument,
              "cpu::preprocess_image: src and dst must not be null");
    const bool resize = p.src_h != p.dst_h || p.src_w != p.dst_w;
    const int64_t plane_size = p.dst_h * p.dst_w;
#pragma omp parallel for collapse(2) schedule(static) if (3 * plane_size >= kParallelMinElements)
    for (int c = 0; c < 3; ++c) {
        for (int64_t oy = 0; oy < p.dst_h; ++oy) {
            const int channel = p.channel_order == ChannelOrder::kRgb ? c : 2 - c;  // source channel of plane c
            const auto load = [&](int64_t y, int64_t x) {
                return static_cast<float>(src[y * row_stride + 3 * x + channel]) / 255.0f;
            };
            float* dst_row = dst + c * plane_size + oy * p.dst_w;
            const auto store = [&](int64_t x, float v) { dst_row[x] = (v - p.mean[c]) / p.std[c]; };
            if (resize) {
                resize_row(load, store, oy, p.src_h, p.src_w, p.dst_h, p.dst_w);
            } else {
                for (int64_t ox = 0; ox < p.dst_w; ++ox) {
                    store(ox, load(oy, ox));
                }
            }
        }
    }
}

void bilinear_resize(
    const float* src, float* dst, int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w) {
    check_sizes("cpu::bilinear_resize", in_h, in_w, out_h, out_w);
    VQA_CHECK(planes >= 0, kInvalidArgument, "cpu::bilinear_resize: expected planes >= 0, got ", planes);
    if (planes == 0) {
        return;
    }
    VQA_CHECK(src != nullptr && dst != nullptr, kInvalidArgument, "cpu::bilinear_resize: src and dst must not be null");
#pragma omp parallel for collapse(2) schedule(static) if (planes * out_h * out_w >= kParallelMinElements)
    for (int64_t plane = 0; plane < planes; ++plane) {
        for (int64_t oy = 0; oy < out_h; ++oy) {
            const float* s = src + plane * in_h * in_w;
            float* dst_row = dst + (plane * out_h + oy) * out_w;
            resize_row([&](int64_t y, int64_t x) { return s[y * in_w + x]; },
                       [&](int64_t x, float v) { dst_row[x] = v; }, oy, in_h, in_w, out_h, out_w);
        }
    }
}

}  // namespace vqa::cpu

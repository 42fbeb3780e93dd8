// Image preprocessing for the grid encoders (docs/model-format.md §4.1): uint8 HWC RGB → float CHW, with
// torch's bilinear resize (align_corners=False, antialias=False), channel reorder and per-channel normalisation.
#pragma once

#include <cstdint>

namespace vqa::cpu {

// Order of the three output planes (config `image.input.channel_order`).
enum class ChannelOrder {
    kRgb,
    kBgr,
};

struct PreprocessParams {
    int64_t src_h = 0;           // h
    int64_t src_w = 0;           // w
    int64_t src_row_stride = 0;  // bytes from src[y, 0, 0] to src[y + 1, 0, 0]; 0 means dense (3·w)
    int64_t dst_h = 0;           // H
    int64_t dst_w = 0;           // W
    ChannelOrder channel_order = ChannelOrder::kRgb;
    float mean[3] = {0.0f, 0.0f, 0.0f};  // per output plane (in channel_order), on values in [0, 1]
    float std[3] = {1.0f, 1.0f, 1.0f};   // per output plane, > 0
};

// dst[c, y, x] = (resize(src / 255)[channel c of channel_order](y, x) − mean[c]) / std[c], all in fp32 as torch
// computes it: v / 255, then the resize (skipped when the size matches; it would be exact), then the
// normalisation. (plane, row) pairs run in parallel.
void preprocess_image(const PreprocessParams& params,
                      const uint8_t* src,  // [h, w, 3] RGB, rows src_row_stride bytes apart
                      float* dst);         // [3, H, W]

// Bilinear resize of float planes, exactly torch.nn.functional.interpolate(mode="bilinear",
// align_corners=False, antialias=False) for an output size (the scale is float(in) / float(out) in fp32).
void bilinear_resize(const float* src,  // [planes, in_h, in_w]
                     float* dst,        // [planes, out_h, out_w]
                     int64_t planes,
                     int64_t in_h,
                     int64_t in_w,
                     int64_t out_h,
                     int64_t out_w);

}  // namespace vqa::cpu

// Region feature files (docs/model-format.md, "Region feature files"): openvqa's .npz layout or safetensors,
// told apart by their first bytes (a zip archive starts with "PK").
//
//   .npz:         x [F, N] (float32/float64, transposed on load), bbox [N, 4] pixels, image_w, image_h scalars,
//                 num_bbox (optional scalar, must equal N); stored (np.savez) or deflated (np.savez_compressed).
//   .safetensors: features [N, F], boxes [N, 4] pixels (optional), image_size [2] = (width, height) (optional).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "vqa/engine.h"

namespace vqa {

// Files and archive entries larger than this are refused (100 regions x 2048 fp64 features is 1.6 MB).
constexpr std::size_t kMaxRegionFileBytes = std::size_t{1} << 30;

// Reads `path`. `expected_feature_dim` > 0: F must equal it; 0 accepts any F. Every problem is a vqa::Error
// naming the file (and the archive entry): kIo when the file cannot be read, kInvalidArgument for its content.
RegionFeatures load_region_features(const std::string& path, int64_t expected_feature_dim);

// One .npy array (format 1.0, 2.0 or 3.0), values widened to double in C (row-major) order.
struct NpyArray {
    std::string descr;           // "<f4", "<i8", "|u1", ...
    std::vector<int64_t> shape;  // [] for a scalar
    std::vector<double> values;
};

// Parses the bytes of one .npy file; `label` names it in errors (kInvalidArgument).
NpyArray parse_npy(const std::byte* data, std::size_t size, const std::string& label);

}  // namespace vqa

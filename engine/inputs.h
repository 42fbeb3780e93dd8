// Turning the public API's images into model inputs: decode + preprocess (grid encoders, §4.1) or pad/truncate
// region features (§4.4). Each function throws vqa::Error naming the image; the engine turns that into the
// Result of every question about that image.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/config.h"
#include "vqa/engine.h"

namespace vqa {

struct PreparedImage {
    std::vector<float> pixels;   // [3, H, W] (grid encoders)
    std::vector<float> regions;  // [N, F] (regions encoder)
    std::vector<float> boxes5;   // [N, 5] (box features)
    std::vector<std::string> warnings;
};

// Decodes (file, encoded bytes) or takes (pixels) an 8-bit RGB image and preprocesses it for the model.
PreparedImage prepare_grid_image(const ImageInput& image, const ModelConfig& config, int64_t max_pixels);

// Pads with zero rows or truncates (with a warning) to max_regions; box features per §4.4. A region file
// (ImageInput::region_file) is read here (engine/region_features.h).
PreparedImage prepare_regions(const ImageInput& image, const ModelConfig& config);

// Height and width of the grid of image tokens a grid encoder produces (tokens are row-major over it).
std::pair<int64_t, int64_t> image_grid(const ModelConfig& config);

PreparedImage prepare_image(const ImageInput& image, const ModelConfig& config, int64_t max_pixels);

}  // namespace vqa

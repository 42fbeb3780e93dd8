// The image trunks of docs/model-format.md §4.2-§4.4 on the CPU: a small CNN, a torchvision ResNet, or region
// features (+ the box branch). They turn a batch of distinct images into trunk features [Bi, Ni, C_img] and a
// token mask; the adapter to d is the model's. Internal to engine/cpu_*.cpp.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/config.h"
#include "engine/cpu_layers.h"
#include "engine/cpu_model.h"

namespace vqa::cpu_layers {

// A convolution with the BatchNorm after it (if any) folded in, and its geometry.
struct FoldedConv {
    std::vector<float> weight;  // [Cout, Cin, k, k]
    std::vector<float> bias;    // [Cout]
    int64_t in_channels = 0;    // Cin
    int64_t out_channels = 0;   // Cout
    int64_t kernel = 1;         // k (square)
    int64_t stride = 1;
    int64_t pad = 0;
};

// torchvision BasicBlock (conv1, conv2) or Bottleneck (conv1, conv2, conv3), with an optional downsample.
struct ResidualBlock {
    std::vector<FoldedConv> convs;  // in order; ReLU after each but the last, which takes the residual
    bool has_downsample = false;
    FoldedConv downsample;  // 1×1 conv + BN on the identity path
};

class ImageTrunk {
public:
    ImageTrunk(const ModelConfig& config, const WeightReader& reader);

    int64_t tokens() const { return tokens_; }            // Ni
    int64_t feature_dim() const { return feature_dim_; }  // C_img
    int64_t grid_height() const { return grid_height_; }  // 0 for regions
    int64_t grid_width() const { return grid_width_; }

    // The converted weights, for backends that upload them (engine/cuda_*).
    ImageEncoder kind() const { return kind_; }
    int64_t input_height() const { return input_height_; }
    int64_t input_width() const { return input_width_; }
    const std::vector<FoldedConv>& cnn_blocks() const { return cnn_; }  // cnn: conv + BN + ReLU, max pool 2×2
    const FoldedConv& stem() const { return stem_; }                    // resnet
    const std::vector<ResidualBlock>& residual_blocks() const { return blocks_; }  // resnet
    int64_t region_features() const { return region_features_; }                  // regions: F
    const Linear& box_branch() const { return box_; }  // regions with box features: [box_dim, 5]; else out = 0

    // features [Bi, Ni, C_img] (token = y·w + x for grids; regions ++ box branch) and mask [Bi, Ni], 1 = valid
    // (a region whose feature row is all exactly zero is masked; grid tokens never are).
    void encode(const ImageBatch& images, std::vector<float>& features, std::vector<uint8_t>& mask) const;

private:
    // A feature map [N, C, H, W] on its way through a grid trunk.
    struct FeatureMap {
        std::vector<float> data;
        int64_t channels = 0;
        int64_t height = 0;
        int64_t width = 0;
    };

    FeatureMap run_cnn(const float* pixels, int64_t count) const;
    FeatureMap run_resnet(const float* pixels, int64_t count) const;
    void encode_regions(const ImageBatch& images, std::vector<float>& features, std::vector<uint8_t>& mask) const;

    ImageEncoder kind_ = ImageEncoder::kCnn;
    int64_t input_height_ = 0;  // grid encoders: the preprocessed size
    int64_t input_width_ = 0;
    int64_t tokens_ = 0;
    int64_t feature_dim_ = 0;
    int64_t grid_height_ = 0;
    int64_t grid_width_ = 0;

    std::vector<FoldedConv> cnn_;  // cnn: one per block (conv + BN + ReLU, then max pool 2×2)
    FoldedConv stem_;              // resnet: conv1 + bn1 (+ ReLU, then max pool 3×3/2 pad 1)
    std::vector<ResidualBlock> blocks_;

    int64_t region_features_ = 0;  // regions: F
    Linear box_;                   // regions with box features: [box_dim, 5]
};

}  // namespace vqa::cpu_layers

#include "engine/cpu_image_encoder.h"

#include <algorithm>
#include <string>

#include "engine/packing.h"
#include "kernels/check.h"
#include "kernels/cpu/conv2d.h"
#include "kernels/trace.h"

namespace vqa::cpu_layers {
namespace {

struct ConvGeometry {
    int64_t in_channels = 0;
    int64_t out_channels = 0;
    int64_t kernel = 1;
    int64_t stride = 1;
    int64_t pad = 0;
};

// Reads `conv.weight` (+ `conv.bias` when has_bias) and folds the BatchNorm under `bn` into it (none when `bn` is
// empty). Folding is done in double (cpu::fold_batch_norm); the result differs from PyTorch's conv-then-BN by
// rounding only.
FoldedConv load_conv(const WeightReader& reader,
                     const std::string& conv,
                     bool has_bias,
                     const std::string& bn,
                     float bn_eps,
                     const ConvGeometry& g) {
    FoldedConv c;
    c.in_channels = g.in_channels;
    c.out_channels = g.out_channels;
    c.kernel = g.kernel;
    c.stride = g.stride;
    c.pad = g.pad;
    c.weight = reader.take(conv + ".weight", {g.out_channels, g.in_channels, g.kernel, g.kernel});
    if (has_bias) {
        c.bias = reader.take(conv + ".bias", {g.out_channels});
    }
    if (!bn.empty()) {
        const std::vector<int64_t> shape{g.out_channels};
        const std::vector<float> gamma = reader.take(bn + ".weight", shape);
        const std::vector<float> beta = reader.take(bn + ".bias", shape);
        const std::vector<float> mean = reader.take(bn + ".running_mean", shape);
        const std::vector<float> var = reader.take(bn + ".running_var", shape);
        std::vector<float> folded_bias(static_cast<std::size_t>(g.out_channels));
        cpu::fold_batch_norm(c.weight.data(), c.bias.empty() ? nullptr : c.bias.data(), gamma.data(), beta.data(),
                             mean.data(), var.data(), bn_eps, g.out_channels, g.in_channels * g.kernel * g.kernel,
                             c.weight.data(), folded_bias.data());
        c.bias = std::move(folded_bias);
    }
    return c;
}

int64_t conv_out(int64_t size, const FoldedConv& c) {
    return (size + 2 * c.pad - c.kernel) / c.stride + 1;
}

cpu::Conv2dParams conv_params(const FoldedConv& c, int64_t count, int64_t height, int64_t width, cpu::Activation act) {
    cpu::Conv2dParams p;
    p.batch = count;
    p.in_channels = c.in_channels;
    p.in_h = height;
    p.in_w = width;
    p.out_channels = c.out_channels;
    p.kernel_h = p.kernel_w = c.kernel;
    p.stride_h = p.stride_w = c.stride;
    p.pad_h = p.pad_w = c.pad;
    p.act = act;
    return p;
}

// torchvision's ResNet: layer1..layer4.
constexpr int kResnetLayers = 4;

}  // namespace

ImageTrunk::ImageTrunk(const ModelConfig& config, const WeightReader& reader) : kind_(config.image.encoder) {
    const ImageConfig& image = config.image;
    input_height_ = image.input.height;
    input_width_ = image.input.width;
    int64_t h = input_height_;
    int64_t w = input_width_;
    switch (kind_) {
        case ImageEncoder::kCnn: {
            int64_t in = 3;
            for (std::size_t i = 0; i < image.cnn.channels.size(); ++i) {
                const std::string p = "image.cnn." + std::to_string(i);
                const int64_t out = image.cnn.channels[i];
                cnn_.push_back(load_conv(reader, p + ".conv", true, image.cnn.batch_norm ? p + ".bn" : "",
                                         image.cnn.bn_eps, {in, out, 3, 1, 1}));
                in = out;
                h /= 2;  // 3×3 conv, padding 1 keeps the size; max pool 2×2 / 2 floors it
                w /= 2;
            }
            feature_dim_ = in;
            VQA_CHECK(!cnn_.empty(), kModelFormat, "image.cnn.channels: expected at least one block");
            VQA_CHECK(h >= 1 && w >= 1, kModelFormat, "image.input ", input_height_, "x", input_width_,
                      " is too small for ", image.cnn.channels.size(), " CNN blocks");
            break;
        }
        case ImageEncoder::kResnet: {
            const ResnetConfig& res = image.resnet;
            VQA_CHECK(res.depth == 18 || res.depth == 34 || res.depth == 50, kModelFormat,
                      "image.resnet.depth: expected 18, 34 or 50, got ", res.depth);
            const bool bottleneck = res.depth == 50;
            const int64_t expansion = bottleneck ? 4 : 1;
            const int counts[kResnetLayers] = {res.depth == 18 ? 2 : 3, res.depth == 18 ? 2 : 4,
                                               res.depth == 18 ? 2 : 6, res.depth == 18 ? 2 : 3};
            const std::string root = "image.resnet.";
            const float eps = res.bn_eps;
            int64_t in = res.base_width;
            stem_ = load_conv(reader, root + "conv1", false, root + "bn1", eps, {3, in, 7, 2, 3});
            h = (conv_out(h, stem_) + 2 - 3) / 2 + 1;  // max pool 3×3 / 2, padding 1
            w = (conv_out(w, stem_) + 2 - 3) / 2 + 1;
            for (int layer = 0; layer < kResnetLayers; ++layer) {
                const int64_t planes = int64_t{res.base_width} << layer;
                const int64_t out = planes * expansion;
                for (int j = 0; j < counts[layer]; ++j) {
                    const std::string p = root + "layer" + std::to_string(layer + 1) + "." + std::to_string(j) + ".";
                    const int64_t stride = (layer > 0 && j == 0) ? 2 : 1;  // on the 3×3 conv
                    ResidualBlock block;
                    if (bottleneck) {
                        block.convs.push_back(
                            load_conv(reader, p + "conv1", false, p + "bn1", eps, {in, planes, 1, 1, 0}));
                        block.convs.push_back(
                            load_conv(reader, p + "conv2", false, p + "bn2", eps, {planes, planes, 3, stride, 1}));
                        block.convs.push_back(
                            load_conv(reader, p + "conv3", false, p + "bn3", eps, {planes, out, 1, 1, 0}));
                    } else {
                        block.convs.push_back(
                            load_conv(reader, p + "conv1", false, p + "bn1", eps, {in, planes, 3, stride, 1}));
                        block.convs.push_back(
                            load_conv(reader, p + "conv2", false, p + "bn2", eps, {planes, planes, 3, 1, 1}));
                    }
                    block.has_downsample = stride != 1 || in != out;
                    if (block.has_downsample) {
                        block.downsample = load_conv(reader, p + "downsample.0", false, p + "downsample.1", eps,
                                                     {in, out, 1, stride, 0});
                    }
                    for (const FoldedConv& c : block.convs) {
                        h = conv_out(h, c);
                        w = conv_out(w, c);
                    }
                    blocks_.push_back(std::move(block));
                    in = out;
                }
            }
            feature_dim_ = in;
            break;
        }
        case ImageEncoder::kRegions: {
            const RegionsConfig& reg = image.regions;
            region_features_ = reg.feature_dim;
            feature_dim_ = reg.feature_dim;
            if (reg.box_features) {
                box_ = Linear::load(reader, "image.box", reg.box_dim, 5);
                feature_dim_ += reg.box_dim;
            }
            tokens_ = reg.max_regions;
            return;
        }
    }
    grid_height_ = h;
    grid_width_ = w;
    tokens_ = h * w;
}

ImageTrunk::FeatureMap ImageTrunk::run_cnn(const float* pixels, int64_t count) const {
    FeatureMap map;
    const float* x = pixels;
    int64_t channels = 3;
    int64_t h = input_height_;
    int64_t w = input_width_;
    std::vector<float> col;
    std::vector<float> conv_out_buffer;
    for (const FoldedConv& c : cnn_) {
        const cpu::Conv2dParams p = conv_params(c, count, h, w, cpu::Activation::kRelu);
        float* scratch = grow(col, cpu::conv2d_scratch_floats(p));
        float* y = grow(conv_out_buffer, count * c.out_channels * p.out_h() * p.out_w());
        cpu::conv2d(p, x, c.weight.data(), c.bias.data(), nullptr, y, scratch);

        cpu::MaxPool2dParams pool;
        pool.planes = count * c.out_channels;
        pool.in_h = p.out_h();
        pool.in_w = p.out_w();
        std::vector<float> pooled(static_cast<std::size_t>(pool.planes * pool.out_h() * pool.out_w()));
        cpu::max_pool2d(pool, y, pooled.data());
        map.data = std::move(pooled);
        x = map.data.data();
        channels = c.out_channels;
        h = pool.out_h();
        w = pool.out_w();
    }
    map.channels = channels;
    map.height = h;
    map.width = w;
    return map;
}

ImageTrunk::FeatureMap ImageTrunk::run_resnet(const float* pixels, int64_t count) const {
    std::vector<float> col;  // im2col scratch, shared by every convolution
    // y = act(conv(x) + residual), a new map.
    auto conv = [&](const FoldedConv& c, const float* x, int64_t h, int64_t w, const float* residual,
                    cpu::Activation act) {
        const cpu::Conv2dParams p = conv_params(c, count, h, w, act);
        FeatureMap y;
        y.channels = c.out_channels;
        y.height = p.out_h();
        y.width = p.out_w();
        y.data.resize(static_cast<std::size_t>(count * y.channels * y.height * y.width));
        cpu::conv2d(p, x, c.weight.data(), c.bias.data(), residual, y.data.data(),
                    grow(col, cpu::conv2d_scratch_floats(p)));
        return y;
    };

    const FeatureMap stem = conv(stem_, pixels, input_height_, input_width_, nullptr, cpu::Activation::kRelu);
    cpu::MaxPool2dParams pool;
    pool.planes = count * stem.channels;
    pool.in_h = stem.height;
    pool.in_w = stem.width;
    pool.kernel_h = pool.kernel_w = 3;
    pool.stride_h = pool.stride_w = 2;
    pool.pad_h = pool.pad_w = 1;
    FeatureMap x;
    x.channels = stem.channels;
    x.height = pool.out_h();
    x.width = pool.out_w();
    x.data.resize(static_cast<std::size_t>(pool.planes * x.height * x.width));
    cpu::max_pool2d(pool, stem.data.data(), x.data.data());

    for (const ResidualBlock& block : blocks_) {
        FeatureMap identity;
        if (block.has_downsample) {
            identity = conv(block.downsample, x.data.data(), x.height, x.width, nullptr, cpu::Activation::kNone);
        }
        const float* residual = block.has_downsample ? identity.data.data() : x.data.data();
        FeatureMap y;
        const FeatureMap* in = &x;
        for (std::size_t i = 0; i + 1 < block.convs.size(); ++i) {
            y = conv(block.convs[i], in->data.data(), in->height, in->width, nullptr, cpu::Activation::kRelu);
            in = &y;
        }
        // relu(bn(conv(out)) + identity)
        FeatureMap out =
            conv(block.convs.back(), in->data.data(), in->height, in->width, residual, cpu::Activation::kRelu);
        x = std::move(out);
    }
    return x;
}

void ImageTrunk::encode_regions(const ImageBatch& images,
                                std::vector<float>& features,
                                std::vector<uint8_t>& mask) const {
    VQA_CHECK(images.regions != nullptr, kInvalidArgument,
              "CpuModel::forward: the regions encoder needs ImageBatch::regions [Bi, N, F]");
    const int64_t rows = images.count * tokens_;
    const int64_t f = region_features_;
    mask = nonzero_rows(images.regions, rows, f);
    features.resize(static_cast<std::size_t>(rows * feature_dim_));
    if (box_.out == 0) {
        std::copy_n(images.regions, rows * f, features.data());
        return;
    }
    VQA_CHECK(images.boxes5 != nullptr, kInvalidArgument,
              "CpuModel::forward: this model uses box features; ImageBatch::boxes5 [Bi, N, 5] is required");
    // The box branch writes its columns after the features of each row (rows feature_dim_ apart).
    std::vector<float> boxes(static_cast<std::size_t>(rows * box_.out));
    box_.forward(images.boxes5, rows, boxes.data());
    for (int64_t r = 0; r < rows; ++r) {
        float* dst = features.data() + r * feature_dim_;
        std::copy_n(images.regions + r * f, f, dst);
        std::copy_n(boxes.data() + r * box_.out, box_.out, dst + f);
    }
}

void ImageTrunk::encode(const ImageBatch& images, std::vector<float>& features, std::vector<uint8_t>& mask) const {
    const TraceRange range(kind_ == ImageEncoder::kCnn      ? "image.cnn"
                           : kind_ == ImageEncoder::kResnet ? "image.resnet"
                                                            : "image.regions");
    if (kind_ == ImageEncoder::kRegions) {
        encode_regions(images, features, mask);
        return;
    }
    VQA_CHECK(images.pixels != nullptr, kInvalidArgument,
              "CpuModel::forward: a grid encoder needs ImageBatch::pixels [Bi, 3, ", input_height_, ", ", input_width_,
              "]");
    const FeatureMap map =
        kind_ == ImageEncoder::kCnn ? run_cnn(images.pixels, images.count) : run_resnet(images.pixels, images.count);
    VQA_CHECK(map.height * map.width == tokens_ && map.channels == feature_dim_, kInternal, "image trunk: expected ",
              tokens_, " tokens of ", feature_dim_, " channels, got ", map.height, "x", map.width, " of ",
              map.channels);
    // [Bi, C, h·w] -> [Bi, h·w, C]: token = y·w + x
    features.resize(static_cast<std::size_t>(images.count * tokens_ * feature_dim_));
    for (int64_t b = 0; b < images.count; ++b) {
        const float* src = map.data.data() + b * feature_dim_ * tokens_;
        float* dst = features.data() + b * tokens_ * feature_dim_;
        for (int64_t c = 0; c < feature_dim_; ++c) {
            for (int64_t t = 0; t < tokens_; ++t) {
                dst[t * feature_dim_ + c] = src[c * tokens_ + t];
            }
        }
    }
    mask.assign(static_cast<std::size_t>(images.count * tokens_), 1);
}

}  // namespace vqa::cpu_layers

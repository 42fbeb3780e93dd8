#include "engine/inputs.h"

#include <cmath>
#include <optional>

#include "engine/image_io.h"
#include "engine/json_util.h"
#include "engine/region_features.h"
#include "kernels/cpu/preprocess_image.h"
#include "kernels/trace.h"

namespace vqa {
namespace {

cpu::PreprocessParams preprocess_params(const ImageInputConfig& input, int height, int width) {
    cpu::PreprocessParams params;
    params.src_h = height;
    params.src_w = width;
    params.dst_h = input.height;
    params.dst_w = input.width;
    params.channel_order =
        input.channel_order == ChannelOrder::kBgr ? cpu::ChannelOrder::kBgr : cpu::ChannelOrder::kRgb;
    for (int c = 0; c < 3; ++c) {
        params.mean[c] = input.mean[c];
        params.std[c] = input.std[c];
    }
    return params;
}

}  // namespace

PreparedImage prepare_grid_image(const ImageInput& image, const ModelConfig& config, int64_t max_pixels) {
    std::optional<TraceRange> stage(std::in_place, "decode");  // then "preprocess": emplace() ends one, begins the next
    ImageU8 decoded;
    const ImageU8* rgb = &decoded;
    ImageDecodeOptions options;
    options.max_pixels = max_pixels;
    switch (image.kind()) {
        case ImageInput::Kind::kFile:
            decoded = decode_image_file(image.name(), options);
            break;
        case ImageInput::Kind::kEncoded:
            decoded = decode_image_memory(image.bytes().data(), image.bytes().size(), image.name(), options);
            break;
        case ImageInput::Kind::kPixels: {
            const int64_t h = image.height();
            const int64_t w = image.width();
            // Unsigned: INT_MAX x INT_MAX x 3 fits in 64 bits only so.
            const uint64_t rgb_bytes = h < 1 || w < 1 ? 0 : static_cast<uint64_t>(h) * static_cast<uint64_t>(w) * 3;
            if (h < 1 || w < 1 || image.bytes().size() != rgb_bytes) {
                throw_error(ErrorCode::kInvalidArgument, image.name(), ": expected ", h, "x", w, "x3 = ", rgb_bytes,
                            " RGB bytes, got ", image.bytes().size());
            }
            if (h * w > max_pixels) {
                throw_error(ErrorCode::kImageDecode, image.name(), ": ", w, "x", h, " is more than the limit of ",
                            max_pixels, " pixels");
            }
            decoded.height = image.height();
            decoded.width = image.width();
            decoded.pixels = image.bytes();
            break;
        }
        case ImageInput::Kind::kRegions:
        case ImageInput::Kind::kRegionFile:
            throw_error(ErrorCode::kInvalidArgument, image.name(), ": this model (image.encoder \"",
                        config.image.encoder == ImageEncoder::kCnn ? "cnn" : "resnet",
                        "\") takes images, not region features");
    }
    stage.emplace("preprocess");
    const ImageInputConfig& input = config.image.input;
    PreparedImage out;
    out.pixels.resize(static_cast<std::size_t>(3) * input.height * input.width);
    cpu::preprocess_image(preprocess_params(input, rgb->height, rgb->width), rgb->pixels.data(), out.pixels.data());
    return out;
}

namespace {

// §4.4 on features already in memory; `name` labels the image in messages.
PreparedImage pad_regions(const RegionFeatures& in, const std::string& name, const ModelConfig& config) {
    const RegionsConfig& rc = config.image.regions;
    if (in.feature_dim != rc.feature_dim) {
        throw_error(ErrorCode::kInvalidArgument, name, ": expected ", rc.feature_dim,
                    " features per region (image.regions.feature_dim), got ", in.feature_dim);
    }
    if (in.num_regions < 0 || static_cast<int64_t>(in.features.size()) != in.num_regions * in.feature_dim) {
        throw_error(ErrorCode::kInvalidArgument, name, ": expected ", in.num_regions, "x", in.feature_dim,
                    " feature values, got ", in.features.size());
    }
    for (float v : in.features) {
        if (!std::isfinite(v)) {
            throw_error(ErrorCode::kInvalidArgument, name, ": region features hold NaN or infinity");
        }
    }
    PreparedImage out;
    const int64_t kept = std::min<int64_t>(in.num_regions, rc.max_regions);
    if (in.num_regions > rc.max_regions) {
        out.warnings.push_back(name + ": " + std::to_string(in.num_regions) + " regions, kept the first " +
                               std::to_string(rc.max_regions) + " (image.regions.max_regions)");
    }
    out.regions.assign(static_cast<std::size_t>(rc.max_regions) * rc.feature_dim, 0.0f);
    std::copy(in.features.begin(), in.features.begin() + kept * rc.feature_dim, out.regions.begin());
    if (!rc.box_features) {
        return out;
    }
    if (static_cast<int64_t>(in.boxes.size()) != in.num_regions * 4) {
        throw_error(ErrorCode::kInvalidArgument, name, ": this model uses box features: expected ", in.num_regions,
                    "x4 box values, got ", in.boxes.size());
    }
    if (!(in.image_width > 0.0f) || !(in.image_height > 0.0f)) {
        throw_error(ErrorCode::kInvalidArgument, name, ": box features need the image width and height > 0, got ",
                    in.image_width, "x", in.image_height);
    }
    out.boxes5.assign(static_cast<std::size_t>(rc.max_regions) * 5, 0.0f);
    const float w = in.image_width;
    const float h = in.image_height;
    for (int64_t r = 0; r < kept; ++r) {
        const float* b = &in.boxes[static_cast<std::size_t>(r) * 4];
        float* o = &out.boxes5[static_cast<std::size_t>(r) * 5];
        o[0] = b[0] / w;
        o[1] = b[1] / h;
        o[2] = b[2] / w;
        o[3] = b[3] / h;
        o[4] = (b[2] - b[0]) * (b[3] - b[1]) / (w * h);  // the same order of operations as the reference
    }
    return out;
}

}  // namespace

PreparedImage prepare_regions(const ImageInput& image, const ModelConfig& config) {
    const TraceRange range("read_regions");
    if (image.kind() == ImageInput::Kind::kRegionFile) {
        // Read here, at answer time, so that a bad file fails only the questions about it.
        return pad_regions(load_region_features(image.name(), config.image.regions.feature_dim), image.name(), config);
    }
    if (image.kind() != ImageInput::Kind::kRegions) {
        throw_error(ErrorCode::kInvalidArgument, image.name(),
                    ": this model (image.encoder \"regions\") takes region features, not an image");
    }
    return pad_regions(image.region_features(), image.name(), config);
}

std::pair<int64_t, int64_t> image_grid(const ModelConfig& config) {
    int64_t h = config.image.input.height;
    int64_t w = config.image.input.width;
    if (config.image.encoder == ImageEncoder::kCnn) {
        for (std::size_t i = 0; i < config.image.cnn.channels.size(); ++i) {  // 2x2 max pools, stride 2, floor
            h /= 2;
            w /= 2;
        }
    } else if (config.image.encoder == ImageEncoder::kResnet) {
        // conv 7x7/2 pad 3, max pool 3x3/2 pad 1, then a 3x3/2 pad 1 (or 1x1/2) stride in layer2..layer4.
        const auto down = [](int64_t x, int64_t k, int64_t pad) { return (x + 2 * pad - k) / 2 + 1; };
        h = down(down(h, 7, 3), 3, 1);
        w = down(down(w, 7, 3), 3, 1);
        for (int i = 0; i < 3; ++i) {
            h = down(h, 3, 1);
            w = down(w, 3, 1);
        }
    } else {
        return {0, 0};
    }
    return {h, w};
}

PreparedImage prepare_image(const ImageInput& image, const ModelConfig& config, int64_t max_pixels) {
    return config.image.encoder == ImageEncoder::kRegions ? prepare_regions(image, config)
                                                          : prepare_grid_image(image, config, max_pixels);
}

}  // namespace vqa

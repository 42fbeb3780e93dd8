// The golden variants of tests/goldens (tools/make_goldens.py) as the model tests load them: the model directory,
// its stored inputs as forward() batches, and the reference activations; shared by the CPU and CUDA model tests.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/cpu_model.h"
#include "engine/model_dir.h"
#include "engine/safetensors.h"

namespace vqa::test {

namespace fs = std::filesystem;

const fs::path kGoldens = fs::path(VQA_SOURCE_DIR) / "tests" / "goldens";

// Every variant tools/make_goldens.py writes; a missing directory fails its tests.
const char* const kVariants[] = {
    "cnn_lstm_mcan_generate_lstm",      "cnn_lstm_mcan_softmax",
    "cnn_transformer_simple_sigmoid",   "regions_box_lstm_mcan_openvqa",
    "regions_lstm_simple_generate_gru", "resnet18_lstm_mcan",
    "resnet50_transformer_simple",
};

inline int64_t numel(const std::vector<int64_t>& shape) {
    return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>());
}

// A golden variant: the model, its inputs and the reference activations.
struct Golden {
    fs::path dir;
    ModelDir model;
    SafetensorsFile inputs;
    SafetensorsFile activations;
    std::vector<int64_t> ids;
    std::vector<int64_t> lengths;
    std::vector<int64_t> image_index;
    std::vector<float> pixels;
    std::vector<float> regions;
    std::vector<float> boxes5;
    int64_t image_count = 0;

    explicit Golden(const fs::path& path)
        : dir(path),
          model(load_model_dir(path.string())),
          inputs((path / "inputs.safetensors").string()),
          activations((path / "activations.safetensors").string()) {
        ids = inputs.as<int64_t>("ids");
        lengths = inputs.as<int64_t>("lengths");
        image_index = inputs.as<int64_t>("image_index");
        const char* image_tensor = inputs.contains("images") ? "images" : "regions";
        image_count = inputs.info(image_tensor).shape.at(0);
        if (inputs.contains("images")) {
            pixels = inputs.to_float("images");
        } else {
            regions = inputs.to_float("regions");
        }
        if (inputs.contains("boxes5")) {
            boxes5 = inputs.to_float("boxes5");
        }
    }

    int64_t questions() const { return static_cast<int64_t>(lengths.size()); }
    int64_t max_length() const { return static_cast<int64_t>(ids.size()) / questions(); }

    ImageBatch image_batch() const {
        ImageBatch batch;
        batch.count = image_count;
        batch.pixels = pixels.empty() ? nullptr : pixels.data();
        batch.regions = regions.empty() ? nullptr : regions.data();
        batch.boxes5 = boxes5.empty() ? nullptr : boxes5.data();
        return batch;
    }
    // Only image `image`, as a batch of one.
    ImageBatch single_image(int64_t image) const {
        ImageBatch batch = image_batch();
        const auto rows = [&](const std::vector<float>& v, const float* p) {
            return p == nullptr ? nullptr : p + image * (static_cast<int64_t>(v.size()) / image_count);
        };
        batch.count = 1;
        batch.pixels = rows(pixels, batch.pixels);
        batch.regions = rows(regions, batch.regions);
        batch.boxes5 = rows(boxes5, batch.boxes5);
        return batch;
    }
    TextBatch text_batch() const { return {questions(), ids.data(), lengths.data(), image_index.data()}; }
};

struct Captured {
    std::vector<int64_t> shape;
    std::vector<float> values;
};

template <typename Model>
std::map<std::string, Captured> run_with_sink(const Model& model,
                                              const ImageBatch& images,
                                              const TextBatch& text,
                                              ModelOutput& out) {
    std::map<std::string, Captured> captured;
    const ActivationSink sink = [&](const std::string& name, const std::vector<int64_t>& shape, const float* data) {
        EXPECT_EQ(captured.count(name), 0u) << name << " emitted twice";
        captured[name] = {shape, std::vector<float>(data, data + numel(shape))};
    };
    out = model.forward(images, text, &sink);
    return captured;
}

// The golden generated tokens [B, T] (I64, -1 after eos) as one list per question.
inline std::vector<std::vector<int32_t>> golden_tokens(const SafetensorsFile& activations) {
    const std::vector<int64_t> shape = activations.info("generated").shape;
    const std::vector<int64_t> flat = activations.as<int64_t>("generated");
    std::vector<std::vector<int32_t>> tokens(static_cast<std::size_t>(shape.at(0)));
    for (int64_t b = 0; b < shape[0]; ++b) {
        for (int64_t t = 0; t < shape[1] && flat[static_cast<std::size_t>(b * shape[1] + t)] >= 0; ++t) {
            tokens[static_cast<std::size_t>(b)].push_back(
                static_cast<int32_t>(flat[static_cast<std::size_t>(b * shape[1] + t)]));
        }
    }
    return tokens;
}

}  // namespace vqa::test

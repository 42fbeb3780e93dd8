// A model directory (docs/model-format.md), loaded and validated as a whole (§9) before anything uses it.
#pragma once

#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/safetensors.h"
#include "engine/vocab.h"

namespace vqa {

struct ModelDir {
    std::string path;
    ModelConfig config;
    SafetensorsFile weights;  // every tensor the config implies, float dtypes, exact shapes, nothing else
    Vocab vocab;              // ids inside [0, V), V = rows of text.embedding.weight
    std::vector<std::string> answers;
};

// Reads config.json, answers.json, vocab.json and model.safetensors from `path` and checks them against each
// other. kIo if a file cannot be read; kModelFormat for any defect. Tensor problems (missing, wrong shape or
// dtype, unexpected) are all listed in one message.
ModelDir load_model_dir(const std::string& path);

// The tensor check of load_model_dir on its own: kModelFormat listing every missing, mis-shaped, non-float and
// unexpected tensor. `num_answers` resolves the A dimension.
void check_model_tensors(const ModelConfig& config, const SafetensorsFile& weights, int64_t num_answers);

// kModelFormat listing every tensor that holds NaN or infinite values, with counts.
void check_finite_weights(const SafetensorsFile& weights);

}  // namespace vqa

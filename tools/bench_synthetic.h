// The synthetic inputs of vqa_bench: images and questions fixed by a seed, and the --dump-inputs file that lets
// tools/bench_torch.py answer the same questions. Every value is splitmix64 over a counter (docs/benchmarks.md);
// tools/bench_inputs.py reproduces the generator bit for bit, so a change here is a change there.
//
// Image m (random RGB pixels at the model's input size, or random region features and boxes) and question q (random
// words from the model's vocab.json) are the same whatever the batch size; a workload of batch B asks question q
// about image q / questions-per-image.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "vqa/engine.h"

namespace vqa::tools {

// What the generator needs to know about the model, read from its directory (the public API does not expose the
// vocabulary or the region sizes).
struct BenchModel {
    bool regions = false;
    int height = 0;  // grid encoders: image.input
    int width = 0;
    int64_t max_regions = 0;  // regions encoder
    int64_t feature_dim = 0;
    bool box_features = false;
    int64_t min_count = 0;  // image m has a region count in min_count..max_count (--regions; default max_regions)
    int64_t max_count = 0;
    int64_t max_length = 0;          // text.tokenizer.max_length
    std::vector<std::string> words;  // vocab.json tokens other than pad and unk, by id
};

// Reads config.json and vocab.json of the model directory; throws std::runtime_error naming the file on a missing
// file, a missing field or a vocabulary without words.
BenchModel read_bench_model(const std::string& dir);

// The inputs of one answer() call of `batch` questions.
struct Workload {
    int batch = 0;
    std::vector<ImageInput> images;  // ceil(batch / questions_per_image)
    std::vector<Query> queries;      // question q about image q / questions_per_image
};

Workload make_workload(const BenchModel& m, uint64_t seed, int batch, int questions_per_image);

// The image part of the input description: pixel size, or region count range, feature size and box image size.
nlohmann::json image_json(const BenchModel& m);

// Writes the --dump-inputs file (format "vqa_bench-inputs/1"): per workload its questions, their image indices and
// the region counts drawn, with the seed and image description that rebuild the images. Throws std::runtime_error
// when the file cannot be written.
void write_inputs(const std::string& path,
                  const std::string& model_dir,
                  uint64_t seed,
                  int questions_per_image,
                  const BenchModel& m,
                  const std::vector<Workload>& workloads);

}  // namespace vqa::tools

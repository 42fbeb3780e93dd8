// vqa_bench's "from features" timing (tools/forward_timer.h).
#include "tools/forward_timer.h"

#include <chrono>

#include "engine/device.h"
#include "engine/inputs.h"
#include "engine/model_dir.h"
#include "engine/model_runner.h"
#include "engine/tokenizer.h"
#include "kernels/check.h"

namespace vqa::tools {

struct ForwardTimer::State {
    ModelDir dir;
    Tokenizer tokenizer;
    ModelRunner runner;
    int64_t max_image_pixels = 0;

    State(ModelDir&& loaded, const EngineOptions& options)
        : dir(std::move(loaded)),
          tokenizer(dir.config.text.tokenizer, dir.vocab),
          runner(dir, options, select_backend(options.device, options.precision)),
          max_image_pixels(options.max_image_pixels) {}
};

ForwardTimer::ForwardTimer(const std::string& model_dir, const EngineOptions& options)
    : state_(std::make_unique<State>(load_model_dir(model_dir), options)) {}

ForwardTimer::~ForwardTimer() = default;

std::vector<double> ForwardTimer::time(const std::vector<ImageInput>& images,
                                       const std::vector<Query>& queries,
                                       int warmup,
                                       int iters) const {
    const ModelConfig& config = state_->dir.config;
    std::vector<int64_t> ids;
    std::vector<int64_t> lengths;
    std::vector<int64_t> image_index;
    for (const Query& q : queries) {
        const Tokenizer::Encoded encoded = state_->tokenizer.encode(q.question);
        VQA_CHECK(encoded.result.length >= 1, kInvalidArgument, "question \"", q.question, "\" has no words");
        ids.insert(ids.end(), encoded.ids.begin(), encoded.ids.end());
        lengths.push_back(encoded.result.length);
        image_index.push_back(q.image);
    }
    std::vector<float> pixels;
    std::vector<float> regions;
    std::vector<float> boxes5;
    for (const ImageInput& image : images) {
        const PreparedImage prepared = prepare_image(image, config, state_->max_image_pixels);
        pixels.insert(pixels.end(), prepared.pixels.begin(), prepared.pixels.end());
        regions.insert(regions.end(), prepared.regions.begin(), prepared.regions.end());
        boxes5.insert(boxes5.end(), prepared.boxes5.begin(), prepared.boxes5.end());
    }
    ImageBatch image_batch;
    image_batch.count = static_cast<int64_t>(images.size());
    image_batch.pixels = pixels.empty() ? nullptr : pixels.data();
    image_batch.regions = regions.empty() ? nullptr : regions.data();
    image_batch.boxes5 = boxes5.empty() ? nullptr : boxes5.data();
    const TextBatch text{static_cast<int64_t>(queries.size()), ids.data(), lengths.data(), image_index.data()};

    for (int i = 0; i < warmup; ++i) {
        state_->runner.forward(image_batch, text);
    }
    std::vector<double> ms;
    for (int i = 0; i < iters; ++i) {
        const auto start = std::chrono::steady_clock::now();
        state_->runner.forward(image_batch, text);  // returns the logits on the host: the device work is done
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    return ms;
}

}  // namespace vqa::tools

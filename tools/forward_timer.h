// The model's forward pass timed alone ("from features", vqa_bench's from_features_ms): the inputs are first
// prepared on the host exactly as Engine::answer() prepares them (token ids and lengths, preprocessed pixels or
// padded region features), then only the backend's forward() is timed. On the CUDA backend that is the one copy
// of the packed inputs to the device, every kernel, and the copy of the logits back; on the CPU, the forward
// pass. Built on the engine's internals (vqa_engine_core), not the public API: answer() cannot be split there.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "vqa/engine.h"

namespace vqa::tools {

class ForwardTimer {
public:
    // Loads the model a second time, on the backend `options` select (as Engine::load does).
    ForwardTimer(const std::string& model_dir, const EngineOptions& options);
    ~ForwardTimer();
    ForwardTimer(const ForwardTimer&) = delete;
    ForwardTimer& operator=(const ForwardTimer&) = delete;

    // Milliseconds of each of `iters` forward passes over the questions (after `warmup` untimed ones); the
    // questions must fit one pass (at most EngineOptions::max_batch). Throws vqa::Error for an input the engine
    // would refuse.
    std::vector<double> time(const std::vector<ImageInput>& images,
                             const std::vector<Query>& queries,
                             int warmup,
                             int iters) const;

private:
    struct State;
    std::unique_ptr<State> state_;
};

}  // namespace vqa::tools

// The model an Engine runs: the CPU model or, in a build with CUDA, the CUDA model, behind one forward() with
// CpuModel's contract (engine/cpu_model.h). Internal to engine/.
#pragma once

#include <cstdint>
#include <memory>

#include "engine/cpu_model.h"
#include "engine/model_dir.h"
#include "vqa/engine.h"

namespace vqa {

class CudaModel;

class ModelRunner {
public:
    // device is kCpu or kCuda (what select_backend() chose). The CPU model uses options.threads; the CUDA model
    // options.precision and options.max_batch, and uploads the weights to device 0.
    ModelRunner(const ModelDir& dir, const EngineOptions& options, Device device);
    ~ModelRunner();
    ModelRunner(ModelRunner&&) noexcept;
    ModelRunner& operator=(ModelRunner&&) noexcept;
    ModelRunner(const ModelRunner&) = delete;
    ModelRunner& operator=(const ModelRunner&) = delete;

    ModelOutput forward(const ImageBatch& images,
                        const TextBatch& text,
                        const ActivationSink* sink = nullptr,
                        bool pool_weights = false) const;
    Device device() const { return device_; }

private:
    Device device_ = Device::kCpu;
    std::unique_ptr<CpuModel> cpu_;
#if VQA_WITH_CUDA
    std::unique_ptr<CudaModel> cuda_;
#endif
};

}  // namespace vqa

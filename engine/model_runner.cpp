// The backend behind an Engine (engine/model_runner.h).
#include "engine/model_runner.h"

#include "engine/json_util.h"
#include "kernels/check.h"

#if VQA_WITH_CUDA
#include "engine/cuda_model.h"
#endif

namespace vqa {

ModelRunner::ModelRunner(const ModelDir& dir, const EngineOptions& options, Device device) : device_(device) {
    if (device == Device::kCuda) {
#if VQA_WITH_CUDA
        CudaModelOptions cuda;
        cuda.precision = options.precision;
        cuda.max_batch = options.max_batch;
        cuda.pack_sequences = options.pack_sequences;
        cuda_ = std::make_unique<CudaModel>(dir, cuda);
        return;
#else
        static_cast<void>(options);
        throw_error(ErrorCode::kUnsupported, "device cuda: this build of libvqa has no CUDA support");
#endif
    }
    VQA_CHECK(device == Device::kCpu, kInvalidArgument, "ModelRunner: expected device cpu or cuda");
    cpu_ = std::make_unique<CpuModel>(dir, options.threads, options.pack_sequences);
}

// Here, where CudaModel is a complete type (its unique_ptr's deleter needs it).
ModelRunner::~ModelRunner() = default;
ModelRunner::ModelRunner(ModelRunner&&) noexcept = default;
ModelRunner& ModelRunner::operator=(ModelRunner&&) noexcept = default;

ModelOutput ModelRunner::forward(const ImageBatch& images,
                                 const TextBatch& text,
                                 const ActivationSink* sink,
                                 bool pool_weights) const {
#if VQA_WITH_CUDA
    if (cuda_ != nullptr) {
        return cuda_->forward(images, text, sink, pool_weights);
    }
#endif
    return cpu_->forward(images, text, sink, pool_weights);
}

}  // namespace vqa

// The model graph on the GPU (docs/model-format.md §4-§8), with the same contract as CpuModel (engine/cpu_model.h):
//
//   CudaModel model(load_model_dir("models/easy-vqa"), {/*device=*/0, Precision::kFp16, /*max_batch=*/64});
//   ModelOutput out = model.forward(images, text);   // out.logits [B, A] float, as the CPU model's
//
// At construction the converted weights (engine/model_weights.h) are uploaded once in the element type of the
// precision (fp32, fp16 or bf16; LayerNorm parameters, softmax statistics, the LSTM cell state and the logits
// stay fp32), and one pass at the largest batch sizes the workspace arena, so forward() never calls cudaMalloc.
// forward() copies the inputs through pinned memory, runs every layer on the engine's stream and copies the
// logits back. Calls on one model run one at a time (the model has one stream and one arena); several models may
// share a device.
#pragma once

#include <cstdint>
#include <memory>

#include "engine/config.h"
#include "engine/cpu_model.h"
#include "engine/model_dir.h"
#include "vqa/engine.h"

namespace vqa {

struct CudaModelOptions {
    int device = 0;                          // CUDA device ordinal
    Precision precision = Precision::kFp32;  // element type of weights and activations
    int64_t max_batch = 64;                  // questions (and distinct images) per forward pass
    // Classifier passes without an activation sink are padded to a bucket (powers of two up to max_batch) and
    // replayed as one CUDA graph per (questions, images) bucket, captured on the bucket's second pass (packed
    // passes: per bucket of their row counts too, docs/padding-removal.md).
    bool cuda_graphs = true;
    // Padding removal (engine/packing.h): passes whose questions and image regions carry padding run with it
    // dropped before the fusion stack (as CUDA graphs too, per bucket of their row counts). Same answers; off =
    // always padded.
    bool pack_sequences = true;
};

class CudaModel {
public:
    // Throws vqa::Error: kModelFormat for a tensor that is missing or mis-shaped, kUnsupported for a model the
    // CUDA kernels cannot run (head dim above kFusedAttentionMaxHeadDim), kOutOfMemory when the weights or the
    // arena for max_batch do not fit on the device (say which and how much), kCuda for other device errors.
    CudaModel(const ModelDir& dir, const CudaModelOptions& options);
    ~CudaModel();
    CudaModel(CudaModel&&) noexcept;
    CudaModel& operator=(CudaModel&&) noexcept;
    CudaModel(const CudaModel&) = delete;
    CudaModel& operator=(const CudaModel&) = delete;

    // As CpuModel::forward. text.count and images.count must not exceed max_batch (kInvalidArgument).
    ModelOutput forward(const ImageBatch& images,
                        const TextBatch& text,
                        const ActivationSink* sink = nullptr,
                        bool pool_weights = false) const;

    const ModelConfig& config() const;
    int64_t num_answers() const;
    int64_t image_tokens() const;
    int64_t max_batch() const;
    std::size_t weight_bytes() const;     // device memory held by the weights
    std::size_t workspace_bytes() const;  // device memory held by the arena

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace vqa

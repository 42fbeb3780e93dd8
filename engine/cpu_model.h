// The model graph on the CPU (docs/model-format.md §4-§8), composed from the reference ops of kernels/cpu.
//
//   CpuModel model(load_model_dir("models/easy-vqa"), /*threads=*/0);
//   ModelOutput out = model.forward(images, text);   // out.logits [B, A], or out.tokens / sequence_scores
//
// The weights are converted once, at construction: fp32 copies, BatchNorm folded into the convolution before
// it, Q/K/V stacked into one [3d, d] projection for self-attention and K/V into one [2d, d] projection for
// cross-attention. forward() is const and keeps its scratch per calling thread (reused, at its largest size, by
// that thread's next pass), so several threads may call it at once on one model.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/model_dir.h"

namespace vqa {

namespace cpu_layers {
struct ModelWeights;  // the converted weights (cpu_model.cpp)
}  // namespace cpu_layers

// The images of one forward pass, one row per DISTINCT image (questions point at rows through image_index).
struct ImageBatch {
    int64_t count = 0;               // Bi
    const float* pixels = nullptr;   // [Bi, 3, H, W] preprocessed (§4.1), H×W = image.input (grid encoders)
    const float* regions = nullptr;  // [Bi, N, F], N = max_regions, padded/truncated already (regions encoder)
    const float* boxes5 = nullptr;   // [Bi, N, 5] (§4.4 box features), required when box_features, else ignored
};

// The questions of one forward pass.
struct TextBatch {
    int64_t count = 0;                     // B
    const int64_t* ids = nullptr;          // [B, L], L = tokenizer.max_length, padded with pad_id
    const int64_t* lengths = nullptr;      // [B], each in 1..L (positions >= length are masked)
    const int64_t* image_index = nullptr;  // [B], row of the ImageBatch each question is about
};

// Receives named intermediate tensors while forward() runs; `data` is valid only during the call. Names and
// layouts are those of the golden activations files (tests/goldens/README.md): image_trunk, image_tokens,
// image_mask, text_embedded, text_mask, text_tokens, fusion.text.{i}, fusion.image.{i}, pooled_text,
// pooled_image, fused, logits | scores, step_logits (masks as 1.0 where MASKED). Also, for display:
//   "<layer>.<att>.probs"  [B, H, Lq, Lk]  every attention's probabilities, e.g. fusion.image.1.cross_att.probs
//   "pool.text.weights"    [B, L, G]       the pooling weights over text positions
//   "pool.image.weights"   [B, Ni, G]      the pooling weights over image tokens
using ActivationSink =
    std::function<void(const std::string& name, const std::vector<int64_t>& shape, const float* data)>;

struct ModelOutput {
    std::vector<float> logits;                 // classifier: [B, A] (before softmax/sigmoid)
    std::vector<std::vector<int32_t>> tokens;  // generate: per question, the greedy ids, eos included if reached
    std::vector<float> sequence_scores;        // generate: [B], product of the chosen tokens' probabilities
    // Asked for with forward(..., pool_weights = true): the attention pooling's weights (the attention maps a
    // caller shows), in the padded layout whether or not the pass was packed; 0 at masked positions.
    std::vector<float> pool_text;   // [B, L, G]
    std::vector<float> pool_image;  // [B, Ni, G]
};

class CpuModel {
public:
    // Converts every weight of `dir` (which need not outlive the model). threads > 0 sets the threads of the
    // OpenMP regions of forward() (on the calling thread, for the call only) and OpenBLAS's thread count, which
    // is process-wide (the last model constructed with threads > 0 sets it); 0 leaves both libraries' defaults
    // (OMP_NUM_THREADS / OPENBLAS_NUM_THREADS, else all cores). kModelFormat if a tensor is missing or
    // mis-shaped, kInvalidArgument if threads < 0. pack_sequences removes the padding of questions and image
    // regions before the fusion stack (engine/packing.h; same answers, less work); a pass with a sink is always
    // padded, since its tensors are reported in the padded layout.
    CpuModel(const ModelDir& dir, int threads, bool pack_sequences = true);
    ~CpuModel();
    CpuModel(CpuModel&&) noexcept;
    CpuModel& operator=(CpuModel&&) noexcept;
    CpuModel(const CpuModel&) = delete;
    CpuModel& operator=(const CpuModel&) = delete;

    // Runs the whole model on a batch. Each distinct image is encoded once; its tokens are then gathered for
    // every question about it. kInvalidArgument for a null input the model needs, a length outside 1..L, an id
    // outside the vocabulary or an image_index outside [0, Bi). `sink`, when given, receives the intermediates;
    // pool_weights fills ModelOutput::pool_text and pool_image.
    ModelOutput forward(const ImageBatch& images,
                        const TextBatch& text,
                        const ActivationSink* sink = nullptr,
                        bool pool_weights = false) const;

    const ModelConfig& config() const;
    int64_t num_answers() const;   // A
    int64_t image_tokens() const;  // Ni: grid cells (grid encoders) or max_regions

private:
    std::unique_ptr<const cpu_layers::ModelWeights> weights_;
    int threads_ = 0;
    bool pack_ = true;
};

}  // namespace vqa

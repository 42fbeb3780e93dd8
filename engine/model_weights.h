// Every weight of a model, read once from its safetensors file and converted for the backends: fp32 copies,
// BatchNorm folded into the convolution before it, Q/K/V stacked into one [3d, d] projection for self-attention
// and K/V into one [2d, d] projection for cross-attention. The CPU backend runs on these directly; the CUDA
// backend uploads them (converted to its element type) and frees them. Internal to engine/.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/cpu_image_encoder.h"
#include "engine/cpu_layers.h"
#include "engine/model_dir.h"
#include "kernels/cpu/rnn.h"

namespace vqa::cpu_layers {

// PyTorch recurrent weights (LSTM: gates i, f, g, o; GRU: r, z, n), owned.
struct RecurrentWeights {
    std::vector<float> weight_ih;  // [G·Hd, E]
    std::vector<float> weight_hh;  // [G·Hd, Hd]
    std::vector<float> bias_ih;    // [G·Hd]
    std::vector<float> bias_hh;    // [G·Hd]

    static RecurrentWeights load(
        const WeightReader& reader, const std::string& prefix, int64_t gates, int64_t hidden, int64_t input) {
        return {reader.take(prefix + ".weight_ih", {gates * hidden, input}),
                reader.take(prefix + ".weight_hh", {gates * hidden, hidden}),
                reader.take(prefix + ".bias_ih", {gates * hidden}), reader.take(prefix + ".bias_hh", {gates * hidden})};
    }
    cpu::RnnWeights view() const { return {weight_ih.data(), weight_hh.data(), bias_ih.data(), bias_hh.data()}; }
};

// Every weight of the model, converted once (cpu_model.h).
struct ModelWeights {
    ModelConfig config;
    AttentionSpec spec;
    int64_t vocab_rows = 0;   // V
    int64_t num_answers = 0;  // A

    ImageTrunk trunk;
    Linear adapter;  // [d, C_img]

    std::vector<float> embedding;  // [V, E]
    RecurrentWeights text_lstm;    // lstm: E -> d
    std::vector<float> position;   // transformer: [L, d]
    std::vector<SelfAttentionLayer> text_layers;

    std::vector<SelfAttentionLayer> fusion_text;     // mcan: SA_i
    std::vector<CrossAttentionLayer> fusion_cross;   // simple: GA_i
    std::vector<GuidedAttentionLayer> fusion_image;  // mcan: SGA_i

    AttentionPool pool_text;
    AttentionPool pool_image;
    LayerNorm head_norm;  // [out_dim]

    Linear classifier;  // classifier: [A, out_dim]

    Linear head_init;                     // generate: [hidden, out_dim]
    std::vector<float> answer_embedding;  // generate: [A, embed_dim]
    RecurrentWeights cell;                // generate: GRUCell / LSTMCell
    Linear head_out;                      // generate: [A, hidden]

    ModelWeights(const ModelDir& dir, const WeightReader& reader);
};

}  // namespace vqa::cpu_layers

// The layers of the model family on the CPU reference ops (docs/model-format.md §6-§7): their weights, converted
// once at load, and the forward functions the CPU model composes them with. Internal to engine/cpu_*.cpp.
//
// Activations are token-major, [B, L, d] with rows of d floats, or packed [T, d] (engine/packing.h): a
// SequenceRows says which. Masks are uint8, 1 = valid (the kernels' convention; the golden files store the
// opposite, 1.0 = masked).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/cpu_model.h"
#include "engine/packing.h"
#include "engine/safetensors.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/bias_act.h"
#include "kernels/cpu/layer_norm.h"

namespace vqa::cpu_layers {

// fp32 copies of a model's tensors, each checked against the shape the caller expects (a ModelDir from
// load_model_dir is already validated; this keeps the CPU model memory-safe for any ModelDir).
class WeightReader {
public:
    explicit WeightReader(const SafetensorsFile& file) : file_(file) {}
    // kModelFormat if `name` is missing or its shape differs.
    std::vector<float> take(const std::string& name, const std::vector<int64_t>& shape) const;

private:
    const SafetensorsFile& file_;
};

// Scratch of one forward pass: buffers that only grow, reused by every layer of the pass.
float* grow(std::vector<float>& buffer, int64_t floats);

struct LayerScratch {
    std::vector<float> projection;  // [B, Lq, 3d] fused QKV, or [B, Lq, d] Q of a cross-attention
    std::vector<float> key_value;   // [B, Lk, 2d] fused KV of a cross-attention
    std::vector<float> probs;       // [B, H, Lq, Lk] attention probabilities (the score workspace)
    std::vector<float> heads;       // [B, Lq, d] attention output, heads merged
    std::vector<float> sublayer;    // [B, Lq, d] output of a sub-layer before the residual LayerNorm
    std::vector<float> hidden;      // [B, Lq, FF] FFN hidden layer, or the pooling MLP's
};

// Emits `name` when a sink is given (shape as a list of dims).
void emit(const ActivationSink* sink, const std::string& name, const std::vector<int64_t>& shape, const float* data);

// y = x Wᵀ + b (PyTorch nn.Linear), W stored [out, in].
struct Linear {
    std::vector<float> weight;  // [out, in]
    std::vector<float> bias;    // [out]
    int64_t out = 0;
    int64_t in = 0;

    // Reads `prefix.weight` [out, in] and `prefix.bias` [out].
    static Linear load(const WeightReader& reader, const std::string& prefix, int64_t out, int64_t in);
    // Stacks layers with the same `in` along the output rows: one GEMM computes them all, side by side.
    static Linear stack(const std::vector<Linear>& parts);

    // y [rows, out] = act(x [rows, in] · Wᵀ + b)
    void forward(const float* x, int64_t rows, float* y, cpu::Activation act = cpu::Activation::kNone) const;
};

struct LayerNorm {
    std::vector<float> weight;  // [dim]
    std::vector<float> bias;    // [dim]
    int64_t dim = 0;
    float eps = 0.0f;
    cpu::LayerNormVariant variant = cpu::LayerNormVariant::kStandard;

    static LayerNorm load(const WeightReader& reader,
                          const std::string& prefix,
                          int64_t dim,
                          const LayerNormConfig& config);
    // y [rows, dim] = LN(x + residual); residual may be null; y may alias x or residual.
    void forward(const float* x, const float* residual, float* y, int64_t rows) const;
};

// What every attention of the model shares.
struct AttentionSpec {
    int64_t dim = 0;    // d
    int64_t heads = 0;  // H
    cpu::MaskedRow masked_row = cpu::MaskedRow::kZero;

    int64_t head_dim() const { return dim / heads; }  // Dh
    static AttentionSpec from_config(const ModelConfig& config);
};

// MHA(x, x, m): p.q, p.k, p.v stacked into one projection, then p.o.
struct SelfAttention {
    Linear qkv;  // [3d, d]: rows 0..d-1 = q, d..2d-1 = k, 2d..3d-1 = v
    Linear o;    // [d, d]

    static SelfAttention load(const WeightReader& reader, const std::string& prefix, int64_t dim);
};

// MHA(x, y, m_y): p.q on the queries' side, p.k and p.v stacked into one projection of y, then p.o.
struct CrossAttention {
    Linear q;   // [d, d]
    Linear kv;  // [2d, d]: rows 0..d-1 = k, d..2d-1 = v
    Linear o;   // [d, d]

    static CrossAttention load(const WeightReader& reader, const std::string& prefix, int64_t dim);
};

struct FeedForward {
    Linear fc1;  // [FF, d]
    Linear fc2;  // [d, FF]

    static FeedForward load(const WeightReader& reader, const std::string& prefix, int64_t dim, int64_t ff);
};

// §6.3 SA: x = LN1(x + MHA(x, x, m)); x = LN2(x + FFN(x)).
struct SelfAttentionLayer {
    SelfAttention att;
    LayerNorm norm1;
    FeedForward ffn;
    LayerNorm norm2;

    static SelfAttentionLayer load(const WeightReader& reader, const std::string& prefix, const ModelConfig& config);
};

// §6.3 SGA: x = LN1(x + MHA(x, x, mx)); x = LN2(x + MHA(x, y, my)); x = LN3(x + FFN(x)).
struct GuidedAttentionLayer {
    SelfAttention self_att;
    LayerNorm norm1;
    CrossAttention cross_att;
    LayerNorm norm2;
    FeedForward ffn;
    LayerNorm norm3;

    static GuidedAttentionLayer load(const WeightReader& reader, const std::string& prefix, const ModelConfig& config);
};

// §6.3 GA: x = LN1(x + MHA(x, y, my)); x = LN2(x + FFN(x)).
struct CrossAttentionLayer {
    CrossAttention cross_att;
    LayerNorm norm1;
    FeedForward ffn;
    LayerNorm norm2;

    static CrossAttentionLayer load(const WeightReader& reader, const std::string& prefix, const ModelConfig& config);
};

// §7 attention-flattening pooling: a = fc2(ReLU(fc1(x))), masked softmax over positions per glimpse, merge.
struct AttentionPool {
    Linear fc1;    // [mlp_hidden, d]
    Linear fc2;    // [G, mlp_hidden]
    Linear merge;  // [out_dim, G·d]

    static AttentionPool load(const WeightReader& reader, const std::string& prefix, const ModelConfig& config);
};

// Each layer updates x in place: x holds the rows of `xs` (queries), y or key_value those of `ys` (keys and values,
// or xs itself for self-attention). Packed queries need xs.offsets. `name` is the layer's tensor prefix
// ("fusion.text.0"); with a sink, every attention's probabilities are emitted as "<name>.<att>.probs"
// [B, H, Lq, Lk] (dense layout; packed sequences fill each block's top-left corner).
void self_attention_layer(const SelfAttentionLayer& layer,
                          const AttentionSpec& spec,
                          float* x,  // [xs.rows, d], in place
                          const SequenceRows& xs,
                          LayerScratch& scratch,
                          const ActivationSink* sink,
                          const std::string& name);

void guided_attention_layer(const GuidedAttentionLayer& layer,
                            const AttentionSpec& spec,
                            float* x,  // [xs.rows, d], in place
                            const SequenceRows& xs,
                            const float* y,  // [ys.rows, d]
                            const SequenceRows& ys,
                            LayerScratch& scratch,
                            const ActivationSink* sink,
                            const std::string& name);

// GA with y's keys and values already projected (layer.cross_att.kv applied to y): the caller can project each
// distinct image once and gather the result per question, or point each question's keys at its image's rows.
void cross_attention_layer(const CrossAttentionLayer& layer,
                           const AttentionSpec& spec,
                           float* x,  // [xs.rows, d], in place
                           const SequenceRows& xs,
                           const float* key_value,  // [ys.rows, 2d]
                           const SequenceRows& ys,
                           LayerScratch& scratch,
                           const ActivationSink* sink,
                           const std::string& name);

// pooled [B, out_dim] = merge(concat_g Σ_l a[l, g] x[l]); with a sink, emits "<name>.weights" [B, L, G]
// (padded sequences only: a packed map has no [B, L] shape). The weights stay in scratch.probs ([rows, G]).
void attention_pool(const AttentionPool& pool,
                    cpu::MaskedRow masked_row,
                    const float* x,  // [xs.rows, d]
                    const SequenceRows& xs,
                    float* pooled,  // [B, out_dim]
                    LayerScratch& scratch,
                    const ActivationSink* sink,
                    const std::string& name);

}  // namespace vqa::cpu_layers

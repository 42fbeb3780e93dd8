#include "engine/cpu_layers.h"

#include <cmath>
#include <optional>

#include "kernels/check.h"
#include "kernels/cpu/attention_pool.h"
#include "kernels/cpu/linear.h"
#include "kernels/trace.h"

namespace vqa::cpu_layers {
namespace {

// out [B, Lq, d] = Linear_o(attention heads). q, k and v are column slices of the projection buffers, read in
// place through the strides (no split copy); the probabilities stay in scratch.probs.
struct AttentionInputs {
    const float* q = nullptr;  // [B, Lq, ·], head h at columns h·Dh.., rows q_row apart
    const float* k = nullptr;  // [B, Lk, ·], rows kv_row apart
    const float* v = nullptr;  // [B, Lk, ·], rows kv_row apart
    int64_t q_row = 0;
    int64_t kv_row = 0;
};

void attend(const Linear& output_projection,
            const AttentionSpec& spec,
            const AttentionInputs& in,
            const SequenceRows& qs,
            const SequenceRows& ks,
            float* out,
            LayerScratch& scratch,
            const ActivationSink* sink,
            const std::string& name) {
    const int64_t dh = spec.head_dim();
    cpu::AttentionParams params;
    params.batch = qs.batch;
    params.heads = spec.heads;
    params.q_len = qs.len;
    params.kv_len = ks.len;
    params.head_dim = dh;
    params.q = cpu::token_major_strides(qs.len, dh, in.q_row);
    params.k = cpu::token_major_strides(ks.len, dh, in.kv_row);
    params.v = params.k;
    params.o = cpu::token_major_strides(qs.len, dh, spec.dim);
    params.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(dh)));
    params.masked_row = spec.masked_row;
    set_packed_runs(params, qs, ks, name);
    float* probs = grow(scratch.probs, qs.batch * spec.heads * qs.len * ks.len);
    float* heads = grow(scratch.heads, qs.rows * spec.dim);
    cpu::attention(params, in.q, in.k, in.v, ks.mask, heads, probs);
    emit(sink, name + ".probs", {qs.batch, spec.heads, qs.len, ks.len}, probs);
    output_projection.forward(heads, qs.rows, out);
}

// out [rows, d] = MHA(x, x) through the fused QKV projection.
void self_attention(const SelfAttention& att,
                    const AttentionSpec& spec,
                    const float* x,
                    const SequenceRows& xs,
                    float* out,
                    LayerScratch& scratch,
                    const ActivationSink* sink,
                    const std::string& name) {
    const int64_t d = spec.dim;
    float* qkv = grow(scratch.projection, xs.rows * 3 * d);
    att.qkv.forward(x, xs.rows, qkv);
    const AttentionInputs in{qkv, qkv + d, qkv + 2 * d, 3 * d, 3 * d};
    attend(att.o, spec, in, xs, xs, out, scratch, sink, name);
}

// out [rows, d] = MHA(x, y) with key_value = y's fused KV projection [ys.rows, 2d].
void cross_attention(const CrossAttention& att,
                     const AttentionSpec& spec,
                     const float* x,
                     const SequenceRows& xs,
                     const float* key_value,
                     const SequenceRows& ys,
                     float* out,
                     LayerScratch& scratch,
                     const ActivationSink* sink,
                     const std::string& name) {
    const int64_t d = spec.dim;
    float* q = grow(scratch.projection, xs.rows * d);
    att.q.forward(x, xs.rows, q);
    const AttentionInputs in{q, key_value, key_value + d, d, 2 * d};
    attend(att.o, spec, in, xs, ys, out, scratch, sink, name);
}

// out [rows, d] = fc2(ReLU(fc1(x)))
void feed_forward(const FeedForward& ffn, const float* x, int64_t rows, float* out, LayerScratch& scratch) {
    float* hidden = grow(scratch.hidden, rows * ffn.fc1.out);
    ffn.fc1.forward(x, rows, hidden, cpu::Activation::kRelu);
    ffn.fc2.forward(hidden, rows, out);
}

cpu::LayerNormVariant to_kernel(LayerNormVariant variant) {
    return variant == LayerNormVariant::kUnbiasedStd ? cpu::LayerNormVariant::kUnbiasedStd
                                                     : cpu::LayerNormVariant::kStandard;
}

}  // namespace

std::vector<float> WeightReader::take(const std::string& name, const std::vector<int64_t>& shape) const {
    VQA_CHECK(file_.contains(name), kModelFormat, file_.label(), ": missing tensor ", name);
    const TensorInfo& info = file_.info(name);
    VQA_CHECK(info.shape == shape, kModelFormat, file_.label(), ": tensor ", name, ": expected shape ",
              shape_string(shape), ", got ", shape_string(info.shape));
    return file_.to_float(name);
}

float* grow(std::vector<float>& buffer, int64_t floats) {
    const auto size = static_cast<std::size_t>(floats);
    if (buffer.size() < size) {
        buffer.resize(size);
    }
    return buffer.data();
}

void emit(const ActivationSink* sink, const std::string& name, const std::vector<int64_t>& shape, const float* data) {
    if (sink != nullptr && *sink) {
        (*sink)(name, shape, data);
    }
}

Linear Linear::load(const WeightReader& reader, const std::string& prefix, int64_t out, int64_t in) {
    Linear layer;
    layer.weight = reader.take(prefix + ".weight", {out, in});
    layer.bias = reader.take(prefix + ".bias", {out});
    layer.out = out;
    layer.in = in;
    return layer;
}

Linear Linear::stack(const std::vector<Linear>& parts) {
    Linear stacked;
    VQA_CHECK(!parts.empty(), kInternal, "Linear::stack: nothing to stack");
    stacked.in = parts.front().in;
    for (const Linear& part : parts) {
        VQA_CHECK(part.in == stacked.in, kInternal, "Linear::stack: input sizes differ (", part.in, " vs ", stacked.in,
                  ")");
        stacked.weight.insert(stacked.weight.end(), part.weight.begin(), part.weight.end());
        stacked.bias.insert(stacked.bias.end(), part.bias.begin(), part.bias.end());
        stacked.out += part.out;
    }
    return stacked;
}

void Linear::forward(const float* x, int64_t rows, float* y, cpu::Activation act) const {
    cpu::linear(x, weight.data(), bias.empty() ? nullptr : bias.data(), nullptr, y, rows, out, in, act);
}

LayerNorm LayerNorm::load(const WeightReader& reader,
                          const std::string& prefix,
                          int64_t dim,
                          const LayerNormConfig& config) {
    LayerNorm norm;
    norm.weight = reader.take(prefix + ".weight", {dim});
    norm.bias = reader.take(prefix + ".bias", {dim});
    norm.dim = dim;
    norm.eps = config.eps;
    norm.variant = to_kernel(config.variant);
    return norm;
}

void LayerNorm::forward(const float* x, const float* residual, float* y, int64_t rows) const {
    cpu::layer_norm(x, residual, weight.data(), bias.data(), y, rows, dim, eps, variant);
}

AttentionSpec AttentionSpec::from_config(const ModelConfig& config) {
    AttentionSpec spec;
    spec.dim = config.fusion.hidden;
    spec.heads = config.fusion.heads;
    spec.masked_row =
        config.fusion.masked_row == MaskedRow::kUniform ? cpu::MaskedRow::kUniform : cpu::MaskedRow::kZero;
    VQA_CHECK(spec.dim >= 1 && spec.heads >= 1 && spec.dim % spec.heads == 0, kModelFormat, "fusion.hidden (", spec.dim,
              ") must be a positive multiple of fusion.heads (", spec.heads, ")");
    return spec;
}

SelfAttention SelfAttention::load(const WeightReader& reader, const std::string& prefix, int64_t dim) {
    SelfAttention att;
    att.qkv =
        Linear::stack({Linear::load(reader, prefix + ".q", dim, dim), Linear::load(reader, prefix + ".k", dim, dim),
                       Linear::load(reader, prefix + ".v", dim, dim)});
    att.o = Linear::load(reader, prefix + ".o", dim, dim);
    return att;
}

CrossAttention CrossAttention::load(const WeightReader& reader, const std::string& prefix, int64_t dim) {
    CrossAttention att;
    att.q = Linear::load(reader, prefix + ".q", dim, dim);
    att.kv =
        Linear::stack({Linear::load(reader, prefix + ".k", dim, dim), Linear::load(reader, prefix + ".v", dim, dim)});
    att.o = Linear::load(reader, prefix + ".o", dim, dim);
    return att;
}

FeedForward FeedForward::load(const WeightReader& reader, const std::string& prefix, int64_t dim, int64_t ff) {
    return {Linear::load(reader, prefix + ".fc1", ff, dim), Linear::load(reader, prefix + ".fc2", dim, ff)};
}

SelfAttentionLayer SelfAttentionLayer::load(const WeightReader& reader,
                                            const std::string& prefix,
                                            const ModelConfig& config) {
    const int64_t d = config.fusion.hidden;
    return {SelfAttention::load(reader, prefix + ".att", d),
            LayerNorm::load(reader, prefix + ".norm1", d, config.layer_norm),
            FeedForward::load(reader, prefix + ".ffn", d, config.fusion.ff),
            LayerNorm::load(reader, prefix + ".norm2", d, config.layer_norm)};
}

GuidedAttentionLayer GuidedAttentionLayer::load(const WeightReader& reader,
                                                const std::string& prefix,
                                                const ModelConfig& config) {
    const int64_t d = config.fusion.hidden;
    return {SelfAttention::load(reader, prefix + ".self_att", d),
            LayerNorm::load(reader, prefix + ".norm1", d, config.layer_norm),
            CrossAttention::load(reader, prefix + ".cross_att", d),
            LayerNorm::load(reader, prefix + ".norm2", d, config.layer_norm),
            FeedForward::load(reader, prefix + ".ffn", d, config.fusion.ff),
            LayerNorm::load(reader, prefix + ".norm3", d, config.layer_norm)};
}

CrossAttentionLayer CrossAttentionLayer::load(const WeightReader& reader,
                                              const std::string& prefix,
                                              const ModelConfig& config) {
    const int64_t d = config.fusion.hidden;
    return {CrossAttention::load(reader, prefix + ".cross_att", d),
            LayerNorm::load(reader, prefix + ".norm1", d, config.layer_norm),
            FeedForward::load(reader, prefix + ".ffn", d, config.fusion.ff),
            LayerNorm::load(reader, prefix + ".norm2", d, config.layer_norm)};
}

AttentionPool AttentionPool::load(const WeightReader& reader, const std::string& prefix, const ModelConfig& config) {
    const int64_t d = config.fusion.hidden;
    const PoolConfig& pool = config.pool;
    return {Linear::load(reader, prefix + ".fc1", pool.mlp_hidden, d),
            Linear::load(reader, prefix + ".fc2", pool.glimpses, pool.mlp_hidden),
            Linear::load(reader, prefix + ".merge", pool.out_dim, int64_t{pool.glimpses} * d)};
}

// Post-norm sub-layers: the sub-layer writes scratch.sublayer, then x = LN(x + sublayer) in place (the sum is
// rounded to fp32 before the statistics, as PyTorch's `x + f(x)` is).
void self_attention_layer(const SelfAttentionLayer& layer,
                          const AttentionSpec& spec,
                          float* x,
                          const SequenceRows& xs,
                          LayerScratch& scratch,
                          const ActivationSink* sink,
                          const std::string& name) {
    float* sub = grow(scratch.sublayer, xs.rows * spec.dim);
    // One trace range per sub-layer, LayerNorm included; each emplace() ends one range and begins the next.
    std::optional<TraceRange> stage(std::in_place, name + ".att");
    self_attention(layer.att, spec, x, xs, sub, scratch, sink, name + ".att");
    layer.norm1.forward(sub, x, x, xs.rows);
    stage.emplace(name + ".ffn");
    feed_forward(layer.ffn, x, xs.rows, sub, scratch);
    layer.norm2.forward(sub, x, x, xs.rows);
}

void guided_attention_layer(const GuidedAttentionLayer& layer,
                            const AttentionSpec& spec,
                            float* x,
                            const SequenceRows& xs,
                            const float* y,
                            const SequenceRows& ys,
                            LayerScratch& scratch,
                            const ActivationSink* sink,
                            const std::string& name) {
    float* sub = grow(scratch.sublayer, xs.rows * spec.dim);
    std::optional<TraceRange> stage(std::in_place, name + ".self_att");
    self_attention(layer.self_att, spec, x, xs, sub, scratch, sink, name + ".self_att");
    layer.norm1.forward(sub, x, x, xs.rows);
    stage.emplace(name + ".cross_att");
    float* key_value = grow(scratch.key_value, ys.rows * 2 * spec.dim);
    layer.cross_att.kv.forward(y, ys.rows, key_value);
    cross_attention(layer.cross_att, spec, x, xs, key_value, ys, sub, scratch, sink, name + ".cross_att");
    layer.norm2.forward(sub, x, x, xs.rows);
    stage.emplace(name + ".ffn");
    feed_forward(layer.ffn, x, xs.rows, sub, scratch);
    layer.norm3.forward(sub, x, x, xs.rows);
}

void cross_attention_layer(const CrossAttentionLayer& layer,
                           const AttentionSpec& spec,
                           float* x,
                           const SequenceRows& xs,
                           const float* key_value,
                           const SequenceRows& ys,
                           LayerScratch& scratch,
                           const ActivationSink* sink,
                           const std::string& name) {
    float* sub = grow(scratch.sublayer, xs.rows * spec.dim);
    std::optional<TraceRange> stage(std::in_place, name + ".cross_att");
    cross_attention(layer.cross_att, spec, x, xs, key_value, ys, sub, scratch, sink, name + ".cross_att");
    layer.norm1.forward(sub, x, x, xs.rows);
    stage.emplace(name + ".ffn");
    feed_forward(layer.ffn, x, xs.rows, sub, scratch);
    layer.norm2.forward(sub, x, x, xs.rows);
}

void attention_pool(const AttentionPool& pool,
                    cpu::MaskedRow masked_row,
                    const float* x,
                    const SequenceRows& xs,
                    float* pooled,
                    LayerScratch& scratch,
                    const ActivationSink* sink,
                    const std::string& name) {
    const TraceRange range(name);
    const int64_t dim = pool.fc1.in;
    const int64_t glimpses = pool.fc2.out;
    VQA_CHECK(!xs.packed() || xs.offsets != nullptr, kInternal, name, ": packed samples need their offsets");
    float* hidden = grow(scratch.hidden, xs.rows * pool.fc1.out);
    float* weights = grow(scratch.probs, xs.rows * glimpses);   // [rows, G]: logits, then the softmax weights
    float* z = grow(scratch.heads, xs.batch * glimpses * dim);  // [B, G·d]
    pool.fc1.forward(x, xs.rows, hidden, cpu::Activation::kRelu);
    pool.fc2.forward(hidden, xs.rows, weights);
    cpu::attention_pool(x, weights, xs.mask, z, xs.batch, xs.len, dim, glimpses, masked_row, xs.offsets);
    if (!xs.packed()) {
        emit(sink, name + ".weights", {xs.batch, xs.len, glimpses}, weights);
    }
    pool.merge.forward(z, xs.batch, pooled);
}

}  // namespace vqa::cpu_layers

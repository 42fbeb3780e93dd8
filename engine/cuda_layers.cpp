// The model family's layers on the GPU (engine/cuda_layers.h): cuBLASLt for the projections and FFNs (bias and
// ReLU in the GEMM epilogue), our kernels for the fused QKV projection with the head split, fused attention,
// LayerNorm with the residual add, and attention pooling.
#include "engine/cuda_layers.h"

#include <cmath>

#include "kernels/attention_pool.h"
#include "kernels/fused_attention.h"
#include "kernels/layer_norm.h"
#include "kernels/qkv_projection.h"
#include "kernels/trace.h"

namespace vqa::gpu {
namespace {

float to_float(float v) {
    return v;
}
float to_float(__half v) {
    return __half2float(v);
}
float to_float(__nv_bfloat16 v) {
    return __bfloat162float(v);
}

template <typename T>
T from_float(float v);
template <>
float from_float<float>(float v) {
    return v;
}
template <>
__half from_float<__half>(float v) {
    return __float2half_rn(v);
}
template <>
__nv_bfloat16 from_float<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

int64_t product(const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (const int64_t dim : shape) {
        n *= dim;
    }
    return n;
}

// Q, K, V (or Q alone, or K and V) of one attention, head-major [B, H, L, Dh] each, from the arena.
template <typename T>
HeadOutputs<T> take_heads(CudaContext& ctx, int groups, int64_t batch, int64_t len, int64_t dim) {
    HeadOutputs<T> heads;
    for (int g = 0; g < groups; ++g) {
        heads.group[g] = ctx.arena().take<T>(batch * len * dim);
    }
    return heads;
}

// Head-major projections cover a sequence per [H, L, Dh] block when padded, and all the rows in one block when
// packed (the runs then index rows of that block).
int64_t head_blocks(const SequenceRows& s) {
    return s.packed() ? 1 : s.batch;
}
int64_t rows_per_block(const SequenceRows& s) {
    return s.packed() ? s.rows : s.len;
}

// O [rows, d] heads-merged = attention(Q, K, V) with the mask over keys; reports the probabilities as
// "<name>.probs" when a sink is given (padded sequences only).
template <typename T>
void attend(const LayerContext& lc,
            const T* q,  // head-major rows of qs, pre-scaled
            const T* k,  // head-major rows of ks
            const T* v,  // head-major rows of ks
            const SequenceRows& qs,
            const SequenceRows& ks,
            T* o,  // [qs.rows, d]
            const std::string& name) {
    const int64_t heads = lc.spec.heads;
    const int64_t head_dim = lc.spec.head_dim();
    cpu::AttentionParams params;
    params.batch = qs.batch;
    params.heads = heads;
    params.q_len = qs.len;
    params.kv_len = ks.len;
    params.head_dim = head_dim;
    params.q = cpu::head_major_strides(heads, rows_per_block(qs), head_dim);
    params.k = cpu::head_major_strides(heads, rows_per_block(ks), head_dim);
    params.v = params.k;
    params.o = cpu::token_major_strides(qs.len, head_dim, lc.spec.dim);
    params.scale = 1.0f;  // Q was scaled by 1/sqrt(Dh) in its projection's epilogue
    params.masked_row = lc.spec.masked_row;
    set_packed_runs(params, qs, ks, name);
    float* probs = nullptr;
    if (lc.sink != nullptr && !qs.packed()) {
        probs = lc.ctx.arena().take<float>(qs.batch * heads * qs.len * ks.len);
    }
    cuda::fused_attention(params, q, k, v, ks.mask, o, probs, lc.ctx.stream());
    if (probs != nullptr) {
        emit_device(lc, name + ".probs", {qs.batch, heads, qs.len, ks.len}, probs);
    }
}

float query_scale(const cpu_layers::AttentionSpec& spec) {
    return 1.0f / std::sqrt(static_cast<float>(spec.head_dim()));
}

// out [rows, d] = o(MHA(x, x)).
template <typename T>
void self_attention(const LayerContext& lc,
                    const DeviceSelfAttention<T>& att,
                    const T* x,
                    const SequenceRows& xs,
                    T* out,
                    const std::string& name) {
    CudaContext& ctx = lc.ctx;
    const int64_t d = lc.spec.dim;
    const int64_t blocks = head_blocks(xs);
    const int64_t len = rows_per_block(xs);
    const HeadOutputs<T> qkv = take_heads<T>(ctx, 3, blocks, len, d);
    const HeadProjectionParams params =
        qkv_projection_params(static_cast<int>(blocks), static_cast<int>(len), static_cast<int>(d),
                              static_cast<int>(lc.spec.heads), query_scale(lc.spec));
    cuda::fused_qkv_projection(params, x, att.qkv.weight.data(), att.qkv.bias.data(), qkv, ctx.stream());
    T* merged = ctx.arena().take<T>(xs.rows * d);
    attend(lc, qkv.group[0], qkv.group[1], qkv.group[2], xs, xs, merged, name);
    att.o.forward(ctx, merged, xs.rows, out);
}

// out [rows, d] = o(MHA(x, k/v)) with K and V already projected.
template <typename T>
void cross_attention(const LayerContext& lc,
                     const DeviceCrossAttention<T>& att,
                     const T* x,
                     const SequenceRows& xs,
                     const T* k,
                     const T* v,
                     const SequenceRows& ks,
                     T* out,
                     const std::string& name) {
    CudaContext& ctx = lc.ctx;
    const int64_t d = lc.spec.dim;
    const int64_t blocks = head_blocks(xs);
    const int64_t len = rows_per_block(xs);
    const HeadOutputs<T> q = take_heads<T>(ctx, 1, blocks, len, d);
    const HeadProjectionParams params =
        cross_projection_params(static_cast<int>(blocks), static_cast<int>(len), static_cast<int>(d),
                                static_cast<int>(lc.spec.heads), 1, query_scale(lc.spec));
    cuda::fused_qkv_projection(params, x, att.q.weight.data(), att.q.bias.data(), q, ctx.stream());
    T* merged = ctx.arena().take<T>(xs.rows * d);
    attend(lc, q.group[0], k, v, xs, ks, merged, name);
    att.o.forward(ctx, merged, xs.rows, out);
}

// x = norm(x + FFN(x)), rows = B·L.
template <typename T>
void feed_forward_block(
    const LayerContext& lc, const DeviceFeedForward<T>& ffn, const DeviceLayerNorm& norm, T* x, int64_t rows) {
    CudaContext& ctx = lc.ctx;
    T* hidden = ctx.arena().take<T>(rows * ffn.fc1.out);
    ffn.fc1.forward(ctx, x, rows, hidden, Epilogue::kBiasRelu);
    T* sublayer = ctx.arena().take<T>(rows * lc.spec.dim);
    ffn.fc2.forward(ctx, hidden, rows, sublayer);
    norm.forward(ctx, x, sublayer, x, rows);
}

}  // namespace

template <typename T>
std::vector<T> to_element_type(const std::vector<float>& values) {
    std::vector<T> out(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) {
        out[i] = from_float<T>(values[i]);
    }
    return out;
}

template <typename T>
DeviceLinear<T> DeviceLinear<T>::upload(const cpu_layers::Linear& host) {
    DeviceLinear linear;
    linear.weight = DeviceBuffer<T>::upload(to_element_type<T>(host.weight));
    linear.bias = DeviceBuffer<T>::upload(to_element_type<T>(host.bias));
    linear.out = host.out;
    linear.in = host.in;
    return linear;
}

template <typename T>
void DeviceLinear<T>::forward(CudaContext& ctx, const T* x, int64_t rows, T* y, Epilogue epilogue, int64_t y_ld) const {
    // Every linear layer of the format has a bias (docs/model-format.md), so the epilogue always has one.
    linear<T>(ctx, {x, rows, in, 0}, weight.data(), bias.data(), y, out, epilogue, y_ld);
}

DeviceLayerNorm DeviceLayerNorm::upload(const cpu_layers::LayerNorm& host) {
    DeviceLayerNorm norm;
    norm.weight = DeviceBuffer<float>::upload(host.weight);
    norm.bias = DeviceBuffer<float>::upload(host.bias);
    norm.dim = host.dim;
    norm.eps = host.eps;
    norm.variant = host.variant;
    return norm;
}

template <typename T>
void DeviceLayerNorm::forward(CudaContext& ctx, const T* x, const T* residual, T* y, int64_t rows) const {
    LayerNormParams params;
    params.rows = rows;
    params.dim = dim;
    params.eps = eps;
    params.variant = variant;
    cuda::layer_norm<T>(params, x, residual, weight.data(), bias.data(), y, nullptr, ctx.stream());
}

template <typename T>
DeviceSelfAttentionLayer<T> DeviceSelfAttentionLayer<T>::upload(const cpu_layers::SelfAttentionLayer& host) {
    return {{DeviceLinear<T>::upload(host.att.qkv), DeviceLinear<T>::upload(host.att.o)},
            DeviceLayerNorm::upload(host.norm1),
            {DeviceLinear<T>::upload(host.ffn.fc1), DeviceLinear<T>::upload(host.ffn.fc2)},
            DeviceLayerNorm::upload(host.norm2)};
}

template <typename T>
DeviceGuidedAttentionLayer<T> DeviceGuidedAttentionLayer<T>::upload(const cpu_layers::GuidedAttentionLayer& host) {
    return {{DeviceLinear<T>::upload(host.self_att.qkv), DeviceLinear<T>::upload(host.self_att.o)},
            DeviceLayerNorm::upload(host.norm1),
            {DeviceLinear<T>::upload(host.cross_att.q), DeviceLinear<T>::upload(host.cross_att.kv),
             DeviceLinear<T>::upload(host.cross_att.o)},
            DeviceLayerNorm::upload(host.norm2),
            {DeviceLinear<T>::upload(host.ffn.fc1), DeviceLinear<T>::upload(host.ffn.fc2)},
            DeviceLayerNorm::upload(host.norm3)};
}

template <typename T>
DeviceCrossAttentionLayer<T> DeviceCrossAttentionLayer<T>::upload(const cpu_layers::CrossAttentionLayer& host) {
    return {{DeviceLinear<T>::upload(host.cross_att.q), DeviceLinear<T>::upload(host.cross_att.kv),
             DeviceLinear<T>::upload(host.cross_att.o)},
            DeviceLayerNorm::upload(host.norm1),
            {DeviceLinear<T>::upload(host.ffn.fc1), DeviceLinear<T>::upload(host.ffn.fc2)},
            DeviceLayerNorm::upload(host.norm2)};
}

template <typename T>
DeviceAttentionPool<T> DeviceAttentionPool<T>::upload(const cpu_layers::AttentionPool& host) {
    return {DeviceLinear<T>::upload(host.fc1), DeviceLinear<T>::upload(host.fc2), DeviceLinear<T>::upload(host.merge),
            DeviceBuffer<float>::upload(host.fc2.bias)};
}

template <typename T>
HeadOutputs<T> project_key_value(const LayerContext& lc,
                                 const DeviceCrossAttention<T>& att,
                                 const T* y,
                                 const SequenceRows& ys) {
    const int64_t d = lc.spec.dim;
    const int64_t blocks = head_blocks(ys);
    const int64_t len = rows_per_block(ys);
    const HeadOutputs<T> kv = take_heads<T>(lc.ctx, 2, blocks, len, d);
    const HeadProjectionParams params = cross_projection_params(
        static_cast<int>(blocks), static_cast<int>(len), static_cast<int>(d), static_cast<int>(lc.spec.heads), 2, 1.0f);
    cuda::fused_qkv_projection(params, y, att.kv.weight.data(), att.kv.bias.data(), kv, lc.ctx.stream());
    return kv;
}

template <typename T>
void emit_device(const LayerContext& lc, const std::string& name, const std::vector<int64_t>& shape, const T* data) {
    if (lc.sink == nullptr) {
        return;
    }
    const std::vector<T> host = download(lc.ctx, data, product(shape));
    std::vector<float> values(host.size());
    for (std::size_t i = 0; i < host.size(); ++i) {
        values[i] = to_float(host[i]);
    }
    (*lc.sink)(name, shape, values.data());
}

void emit_mask(const LayerContext& lc,
               const std::string& name,
               const std::vector<int64_t>& shape,
               const uint8_t* mask) {
    if (lc.sink == nullptr) {
        return;
    }
    const std::vector<uint8_t> host = download(lc.ctx, mask, product(shape));
    std::vector<float> values(host.size());
    for (std::size_t i = 0; i < host.size(); ++i) {
        values[i] = host[i] != 0 ? 0.0f : 1.0f;
    }
    (*lc.sink)(name, shape, values.data());
}

template <typename T>
void self_attention_layer(const LayerContext& lc,
                          const DeviceSelfAttentionLayer<T>& layer,
                          T* x,
                          const SequenceRows& xs,
                          const std::string& name) {
    const TraceRange range(name, lc.ctx.stream());
    T* sublayer = lc.ctx.arena().take<T>(xs.rows * lc.spec.dim);
    self_attention(lc, layer.att, x, xs, sublayer, name + ".att");
    layer.norm1.forward(lc.ctx, x, sublayer, x, xs.rows);
    feed_forward_block(lc, layer.ffn, layer.norm2, x, xs.rows);
}

template <typename T>
void guided_attention_layer(const LayerContext& lc,
                            const DeviceGuidedAttentionLayer<T>& layer,
                            T* x,
                            const SequenceRows& xs,
                            const T* y,
                            const SequenceRows& ys,
                            const std::string& name) {
    const TraceRange range(name, lc.ctx.stream());
    T* sublayer = lc.ctx.arena().take<T>(xs.rows * lc.spec.dim);
    self_attention(lc, layer.self_att, x, xs, sublayer, name + ".self_att");
    layer.norm1.forward(lc.ctx, x, sublayer, x, xs.rows);
    const HeadOutputs<T> kv = project_key_value(lc, layer.cross_att, y, ys);
    cross_attention(lc, layer.cross_att, x, xs, kv.group[0], kv.group[1], ys, sublayer, name + ".cross_att");
    layer.norm2.forward(lc.ctx, x, sublayer, x, xs.rows);
    feed_forward_block(lc, layer.ffn, layer.norm3, x, xs.rows);
}

template <typename T>
void cross_attention_layer(const LayerContext& lc,
                           const DeviceCrossAttentionLayer<T>& layer,
                           T* x,
                           const SequenceRows& xs,
                           const T* k,
                           const T* v,
                           const SequenceRows& ks,
                           const std::string& name) {
    const TraceRange range(name, lc.ctx.stream());
    T* sublayer = lc.ctx.arena().take<T>(xs.rows * lc.spec.dim);
    cross_attention(lc, layer.cross_att, x, xs, k, v, ks, sublayer, name + ".cross_att");
    layer.norm1.forward(lc.ctx, x, sublayer, x, xs.rows);
    feed_forward_block(lc, layer.ffn, layer.norm2, x, xs.rows);
}

template <typename T>
void attention_pool(const LayerContext& lc,
                    const DeviceAttentionPool<T>& pool,
                    const T* x,
                    const SequenceRows& xs,
                    T* pooled,
                    const std::string& name,
                    float* weights_out) {
    const TraceRange range(name, lc.ctx.stream());
    CudaContext& ctx = lc.ctx;
    VQA_CHECK(!xs.packed() || xs.offsets != nullptr, kInternal, name, ": packed samples need their offsets");
    const int64_t rows = xs.rows;
    const int64_t glimpses = pool.fc2.out;
    const int64_t d = pool.fc1.in;
    T* hidden = ctx.arena().take<T>(rows * pool.fc1.out);
    pool.fc1.forward(ctx, x, rows, hidden, Epilogue::kBiasRelu);
    // The logits and the softmax map stay float in every precision (kernels/attention_pool.h): fc2 writes fp32.
    float* weights = weights_out != nullptr ? weights_out : ctx.arena().take<float>(rows * glimpses);
    linear_to_float<T>(ctx, {hidden, rows, pool.fc2.in, 0}, pool.fc2.weight.data(), pool.logits_bias.data(), weights,
                       glimpses, Epilogue::kBias);
    T* z = ctx.arena().take<T>(xs.batch * glimpses * d);
    AttentionPoolParams params;
    params.batch = xs.batch;
    params.seq_len = xs.len;
    params.dim = d;
    params.glimpses = glimpses;
    params.masked_row = lc.spec.masked_row;
    params.offsets = xs.offsets;
    cuda::attention_pool(params, x, weights, xs.mask, z, ctx.stream());
    if (!xs.packed()) {
        emit_device(lc, name + ".weights", {xs.batch, xs.len, glimpses}, weights);
    }
    pool.merge.forward(ctx, z, xs.batch, pooled);
}

#define VQA_INSTANTIATE_LAYERS(T)                                                                                      \
    template std::vector<T> to_element_type<T>(const std::vector<float>&);                                             \
    template struct DeviceLinear<T>;                                                                                   \
    template void DeviceLayerNorm::forward<T>(CudaContext&, const T*, const T*, T*, int64_t) const;                    \
    template struct DeviceSelfAttentionLayer<T>;                                                                       \
    template struct DeviceGuidedAttentionLayer<T>;                                                                     \
    template struct DeviceCrossAttentionLayer<T>;                                                                      \
    template struct DeviceAttentionPool<T>;                                                                            \
    template HeadOutputs<T> project_key_value<T>(const LayerContext&, const DeviceCrossAttention<T>&, const T*,        \
                                                 const SequenceRows&);                                                 \
    template void emit_device<T>(const LayerContext&, const std::string&, const std::vector<int64_t>&, const T*);      \
    template void self_attention_layer<T>(const LayerContext&, const DeviceSelfAttentionLayer<T>&, T*,                 \
                                          const SequenceRows&, const std::string&);                                    \
    template void guided_attention_layer<T>(const LayerContext&, const DeviceGuidedAttentionLayer<T>&, T*,             \
                                            const SequenceRows&, const T*, const SequenceRows&, const std::string&);   \
    template void cross_attention_layer<T>(const LayerContext&, const DeviceCrossAttentionLayer<T>&, T*,               \
                                           const SequenceRows&, const T*, const T*, const SequenceRows&,               \
                                           const std::string&);                                                        \
    template void attention_pool<T>(const LayerContext&, const DeviceAttentionPool<T>&, const T*, const SequenceRows&, \
                                    T*, const std::string&, float*);

VQA_INSTANTIATE_LAYERS(float)
VQA_INSTANTIATE_LAYERS(__half)
VQA_INSTANTIATE_LAYERS(__nv_bfloat16)

}  // namespace vqa::gpu

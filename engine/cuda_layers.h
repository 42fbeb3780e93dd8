// The layers of the model family on the GPU (docs/model-format.md §6-§7): their weights, uploaded once from the
// converted host weights (engine/model_weights.h) in the backend's element type T, and the forward functions the
// CUDA model composes them with. Internal to engine/cuda_*.cpp; the CPU twins are in engine/cpu_layers.h.
//
// Activations are token-major [B, L, d] in T on the device, or packed [T, d] (engine/packing.h), as a SequenceRows
// with device pointers says; masks are uint8, 1 = valid. Every function
// queues work on the pass's stream and takes its scratch from the context's arena; none synchronises unless an
// activation sink asks for a tensor.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/cpu_layers.h"
#include "engine/cpu_model.h"
#include "engine/cuda_runtime.h"
#include "engine/packing.h"
#include "kernels/qkv_projection.h"

namespace vqa::gpu {

// Host fp32 values as T (round to nearest even).
template <typename T>
std::vector<T> to_element_type(const std::vector<float>& values);

// nn.Linear: weight [out, in] and bias [out], in T.
template <typename T>
struct DeviceLinear {
    DeviceBuffer<T> weight;
    DeviceBuffer<T> bias;
    int64_t out = 0;
    int64_t in = 0;

    static DeviceLinear upload(const cpu_layers::Linear& host);
    // y [rows, out] (rows y_ld apart, 0 = out) = epilogue(x [rows, in] · Wᵀ + b)
    void forward(
        CudaContext& ctx, const T* x, int64_t rows, T* y, Epilogue epilogue = Epilogue::kBias, int64_t y_ld = 0) const;
};

// LayerNorm parameters stay fp32 whatever T is.
struct DeviceLayerNorm {
    DeviceBuffer<float> weight;
    DeviceBuffer<float> bias;
    int64_t dim = 0;
    float eps = 0.0f;
    cpu::LayerNormVariant variant = cpu::LayerNormVariant::kStandard;

    static DeviceLayerNorm upload(const cpu_layers::LayerNorm& host);
    // y [rows, d] = LN(x + residual); residual may be null; y may be x or residual.
    template <typename T>
    void forward(CudaContext& ctx, const T* x, const T* residual, T* y, int64_t rows) const;
};

template <typename T>
struct DeviceSelfAttention {
    DeviceLinear<T> qkv;  // [3d, d]
    DeviceLinear<T> o;    // [d, d]
};

template <typename T>
struct DeviceCrossAttention {
    DeviceLinear<T> q;   // [d, d]
    DeviceLinear<T> kv;  // [2d, d]
    DeviceLinear<T> o;   // [d, d]
};

template <typename T>
struct DeviceFeedForward {
    DeviceLinear<T> fc1;  // [FF, d]
    DeviceLinear<T> fc2;  // [d, FF]
};

// §6.3 SA: x = LN1(x + MHA(x, x)); x = LN2(x + FFN(x)).
template <typename T>
struct DeviceSelfAttentionLayer {
    DeviceSelfAttention<T> att;
    DeviceLayerNorm norm1;
    DeviceFeedForward<T> ffn;
    DeviceLayerNorm norm2;

    static DeviceSelfAttentionLayer upload(const cpu_layers::SelfAttentionLayer& host);
};

// §6.3 SGA: SA, then x = LN2(x + MHA(x, y)), then the FFN.
template <typename T>
struct DeviceGuidedAttentionLayer {
    DeviceSelfAttention<T> self_att;
    DeviceLayerNorm norm1;
    DeviceCrossAttention<T> cross_att;
    DeviceLayerNorm norm2;
    DeviceFeedForward<T> ffn;
    DeviceLayerNorm norm3;

    static DeviceGuidedAttentionLayer upload(const cpu_layers::GuidedAttentionLayer& host);
};

// §6.3 GA: x = LN1(x + MHA(x, y)); x = LN2(x + FFN(x)).
template <typename T>
struct DeviceCrossAttentionLayer {
    DeviceCrossAttention<T> cross_att;
    DeviceLayerNorm norm1;
    DeviceFeedForward<T> ffn;
    DeviceLayerNorm norm2;

    static DeviceCrossAttentionLayer upload(const cpu_layers::CrossAttentionLayer& host);
};

// §7 AttFlat pooling.
template <typename T>
struct DeviceAttentionPool {
    DeviceLinear<T> fc1;              // [mlp_hidden, d]
    DeviceLinear<T> fc2;              // [G, mlp_hidden]
    DeviceLinear<T> merge;            // [out_dim, G·d]
    DeviceBuffer<float> logits_bias;  // fc2's bias in float: the pooling logits are fp32 in every precision

    static DeviceAttentionPool upload(const cpu_layers::AttentionPool& host);
};

// What every layer call of one pass shares.
struct LayerContext {
    CudaContext& ctx;
    const cpu_layers::AttentionSpec& spec;
    const ActivationSink* sink = nullptr;  // non-null: tensors are copied to the host and reported
};

// Reports a device tensor to the sink (synchronises); a no-op without a sink.
template <typename T>
void emit_device(const LayerContext& lc, const std::string& name, const std::vector<int64_t>& shape, const T* data);
// A uint8 mask (1 = valid) reported as the golden files store it: float, 1.0 where MASKED.
void emit_mask(const LayerContext& lc, const std::string& name, const std::vector<int64_t>& shape, const uint8_t* mask);

// Each layer updates x in place: x holds the rows of `xs` (queries; packed queries need xs.offsets), y those of
// `ys` (keys and values). Attention maps ("<name>.<att>.probs") are reported for padded sequences only.
template <typename T>
void self_attention_layer(const LayerContext& lc,
                          const DeviceSelfAttentionLayer<T>& layer,
                          T* x,  // [xs.rows, d], in place
                          const SequenceRows& xs,
                          const std::string& name);

template <typename T>
void guided_attention_layer(const LayerContext& lc,
                            const DeviceGuidedAttentionLayer<T>& layer,
                            T* x,  // [xs.rows, d], in place
                            const SequenceRows& xs,
                            const T* y,  // [ys.rows, d]
                            const SequenceRows& ys,
                            const std::string& name);

// K, V (from the arena) of y: cross-attention's fused K/V projection, head-major: [B, H, L, Dh] padded, or
// [H, T, Dh] packed (one block of all the rows).
template <typename T>
HeadOutputs<T> project_key_value(const LayerContext& lc,
                                 const DeviceCrossAttention<T>& att,
                                 const T* y,  // [ys.rows, d]
                                 const SequenceRows& ys);

// GA with the keys and values already projected and split into heads (project_key_value's layout for the rows of
// ks): the caller projects each distinct image once and gathers per question, or points each question's key run
// at its image's rows.
template <typename T>
void cross_attention_layer(const LayerContext& lc,
                           const DeviceCrossAttentionLayer<T>& layer,
                           T* x,  // [xs.rows, d], in place
                           const SequenceRows& xs,
                           const T* k,
                           const T* v,
                           const SequenceRows& ks,
                           const std::string& name);

// pooled [B, out_dim] = merge(concat_g Σ_l a[l, g] x[l]); with a sink (padded only), reports "<name>.weights"
// [B, L, G]. weights_out, when non-null, receives the pooling weights [xs.rows, G] (float).
template <typename T>
void attention_pool(const LayerContext& lc,
                    const DeviceAttentionPool<T>& pool,
                    const T* x,  // [xs.rows, d]
                    const SequenceRows& xs,
                    T* pooled,  // [B, out_dim]
                    const std::string& name,
                    float* weights_out = nullptr);

}  // namespace vqa::gpu

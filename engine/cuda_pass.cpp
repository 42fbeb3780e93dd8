// The stages of one forward pass on the GPU (engine/cuda_pass.h): the same graph as engine/cpu_model.cpp, on the
// layers of engine/cuda_layers.cpp and the trunk of engine/cuda_image_encoder.cpp; and the packed layout of a pass
// (docs/padding-removal.md). How passes are staged, bucketed and replayed is in engine/cuda_model.cpp.
#include "engine/cuda_pass.h"

#include <algorithm>
#include <string>
#include <vector>

#include "kernels/bias_act.h"
#include "kernels/check.h"
#include "kernels/embedding_gather.h"
#include "kernels/rnn.h"
#include "kernels/tensor_ops.h"
#include "kernels/trace.h"

namespace vqa::gpu {
namespace {

// Packed row counts are rounded up to a multiple of this (engine/packing.h, pad_rows_to_multiple).
constexpr int64_t kPackedRowStep = 64;
// A captured packed pass rounds each row count up to one of about this many buckets between 0 and the padded count.
constexpr int64_t kGraphRowBuckets = 16;
int64_t round_up(int64_t n, int64_t step) {
    return (n + step - 1) / step * step;
}

// Rounds runs' rows up to a bucket (a multiple of a step that is about padded_rows / kGraphRowBuckets, capped at
// padded_rows rounded to kPackedRowStep, which the load pass sized everything for), sets the longest sequence to
// `longest`, and gives it a mask (all ones when none), so that every pass of one bucket launches the same kernels
// with the same arguments.
void shape_runs_for_graph(PackedSequences& runs, int64_t padded_rows, int64_t longest) {
    if (runs.source.empty()) {
        return;
    }
    const int64_t step =
        round_up(std::max(kPackedRowStep, (padded_rows + kGraphRowBuckets - 1) / kGraphRowBuckets), kPackedRowStep);
    if (runs.mask.empty()) {  // before the padding, so that the rows no sequence owns are masked
        runs.mask.assign(static_cast<std::size_t>(runs.total()), 1);
    }
    pad_rows_to(runs,
                std::max(runs.total(), std::min(round_up(runs.total(), step), round_up(padded_rows, kPackedRowStep))));
    runs.longest = longest;
}

}  // namespace

template <typename T>
Graph<T>::Graph(CudaContext& ctx, const cpu_layers::ModelWeights& w, int64_t max_batch)
    : ctx_(ctx),
      config_(w.config),
      spec_(w.spec),
      vocab_rows_(w.vocab_rows),
      num_answers_(w.num_answers),
      tokens_(w.trunk.tokens()),
      trunk_features_(w.trunk.feature_dim()),
      max_batch_(max_batch) {
    const ModelConfig& c = config_;
    if (c.image.encoder != ImageEncoder::kRegions) {
        trunk_ = std::make_unique<CudaImageTrunk<T>>(ctx, w.trunk, max_batch);
    } else {
        region_features_ = w.trunk.region_features();
        if (w.trunk.box_branch().out > 0) {
            box_ = DeviceLinear<T>::upload(w.trunk.box_branch());
        }
    }
    adapter_ = DeviceLinear<T>::upload(w.adapter);
    embedding_ = DeviceBuffer<T>::upload(to_element_type<T>(w.embedding));
    if (c.text.encoder == TextEncoder::kLstm) {
        text_lstm_ = DeviceRecurrent<T>::upload(w.text_lstm, 4, c.fusion.hidden);
    } else {
        position_ = DeviceBuffer<T>::upload(to_element_type<T>(w.position));
        for (const auto& layer : w.text_layers) {
            text_layers_.push_back(DeviceSelfAttentionLayer<T>::upload(layer));
        }
    }
    for (const auto& layer : w.fusion_text) {
        fusion_text_.push_back(DeviceSelfAttentionLayer<T>::upload(layer));
    }
    for (const auto& layer : w.fusion_image) {
        fusion_image_.push_back(DeviceGuidedAttentionLayer<T>::upload(layer));
    }
    for (const auto& layer : w.fusion_cross) {
        fusion_cross_.push_back(DeviceCrossAttentionLayer<T>::upload(layer));
    }
    pool_text_ = DeviceAttentionPool<T>::upload(w.pool_text);
    pool_image_ = DeviceAttentionPool<T>::upload(w.pool_image);
    head_norm_ = DeviceLayerNorm::upload(w.head_norm);
    if (c.head.type == HeadType::kClassifier) {
        classifier_ = DeviceLinear<T>::upload(w.classifier);
        classifier_bias_ = DeviceBuffer<float>::upload(w.classifier.bias);
    } else {
        head_init_ = DeviceLinear<T>::upload(w.head_init);
        answer_embedding_ = DeviceBuffer<T>::upload(to_element_type<T>(w.answer_embedding));
        cell_ = DeviceRecurrent<T>::upload(w.cell, c.head.cell == RecurrentCell::kGru ? 3 : 4, c.head.hidden);
        head_out_ = DeviceLinear<T>::upload(w.head_out);
        head_out_bias_ = DeviceBuffer<float>::upload(w.head_out.bias);
    }
}

// §4: tokens [Bi, Ni, d] and their mask [Bi, Ni] (1 = valid); packed, the kept rows only go through the adapter
// and valid is null (the packed runs carry the mask).
template <typename T>
void Graph<T>::encode_images(const LayerContext& lc,
                             const DeviceInputs& in,
                             int64_t count,
                             const PassPacking* packing,
                             T* tokens,
                             uint8_t* valid) {
    const TraceRange range("image_encoder", lc.ctx.stream());
    CudaContext& ctx = lc.ctx;
    const cudaStream_t stream = ctx.stream();
    const int64_t rows = count * tokens_;
    T* features = ctx.arena().take<T>(rows * trunk_features_);  // [Bi, Ni, C_img]
    if (trunk_ != nullptr) {
        const ImageInputConfig& input = config_.image.input;
        const int64_t pixel_count = count * 3 * int64_t{input.height} * input.width;
        const T* pixels = nullptr;
        if constexpr (std::is_same_v<T, float>) {
            pixels = in.pixels;
        } else {
            T* converted = ctx.arena().take<T>(pixel_count);
            cuda::convert<float, T>(in.pixels, converted, pixel_count, stream);
            pixels = converted;
        }
        trunk_->encode(ctx, pixels, count, features);
        if (valid != nullptr) {
            VQA_CUDA_CHECK(cudaMemsetAsync(valid, 1, static_cast<std::size_t>(rows), stream));
        }
    } else {
        // Regions: an all-zero feature row is padding (masked); the box branch's columns follow the features.
        const int64_t f = region_features_;
        if (valid != nullptr) {
            cuda::nonzero_row_mask<float>(in.regions, rows, f, valid, stream);
        }
        RowsShape shape;
        shape.rows = rows;
        shape.cols = f;
        shape.dst_row_stride = trunk_features_;
        cuda::convert_rows<float, T>(shape, in.regions, features, stream);
        if (box_.out > 0) {
            T* boxes = ctx.arena().take<T>(rows * 5);
            cuda::convert<float, T>(in.boxes5, boxes, rows * 5, stream);
            box_.forward(ctx, boxes, rows, features + f, Epilogue::kBias, trunk_features_);
        }
    }
    emit_device(lc, "image_trunk", {count, tokens_, trunk_features_}, features);
    if (packing != nullptr) {
        const int64_t kept = packing->image_rows.rows;
        T* packed = ctx.arena().take<T>(kept * trunk_features_);
        cuda::gather_rows<T>(features, rows, packing->image_source, kept, trunk_features_, packed, stream);
        adapter_.forward(ctx, packed, kept, tokens);
        return;  // no sink on a packed pass
    }
    adapter_.forward(ctx, features, rows, tokens);
    emit_device(lc, "image_tokens", {count, tokens_, spec_.dim}, tokens);
    emit_mask(lc, "image_mask", {count, tokens_}, valid);
}

// §5: text tokens t [B, L, d], or packed: the LSTM runs padded and its valid rows are gathered (it is causal); the
// transformer's positions are added padded and its layers run packed.
template <typename T>
void Graph<T>::encode_text(const LayerContext& lc,
                           const DeviceInputs& in,
                           int64_t batch,
                           int64_t len,
                           const PassPacking* packing,
                           T* t,
                           const uint8_t* t_valid) {
    const TraceRange range("text_encoder", lc.ctx.stream());
    CudaContext& ctx = lc.ctx;
    const cudaStream_t stream = ctx.stream();
    const int64_t rows = batch * len;
    const int64_t e = config_.text.embed_dim;
    const int64_t d = spec_.dim;
    T* embedded = ctx.arena().take<T>(rows * e);                         // [B, L, E]
    T* padded = packing != nullptr ? ctx.arena().take<T>(rows * d) : t;  // [B, L, d] before packing
    const SequenceRows text_rows = packing != nullptr ? packing->text_rows : SequenceRows::padded(batch, len, t_valid);
    const auto pack = [&] {
        if (packing != nullptr) {
            cuda::gather_rows<T>(padded, rows, packing->text_source, text_rows.rows, d, t, stream);
        }
    };
    cuda::embedding_gather<T, int64_t>(in.ids, rows, embedding_.data(), vocab_rows_, e, embedded, nullptr, stream);
    emit_device(lc, "text_embedded", {batch, len, e}, embedded);
    if (config_.text.encoder == TextEncoder::kLstm) {
        // One GEMM projects every step's input (b_ih in its epilogue); then per step one GEMM of the previous h
        // and the gate kernel, which adds b_hh and keeps the cell state in float.
        const DeviceRecurrent<T>& lstm = text_lstm_;
        T* gx = ctx.arena().take<T>(rows * lstm.gates_hidden);  // [B, L, 4d]
        linear<T>(ctx, {embedded, rows, e, 0}, lstm.weight_ih.data(), lstm.bias_ih.data(), gx, lstm.gates_hidden,
                  Epilogue::kBias);
        T* gh = ctx.arena().take<T>(batch * lstm.gates_hidden);  // [B, 4d]
        float* c = ctx.arena().take<float>(batch * d);
        const RnnGatesParams params = lstm_sequence_gates_params(batch, len, d);
        for (int64_t step = 0; step < len; ++step) {
            if (step > 0) {
                linear<T>(ctx, {padded + (step - 1) * d, batch, d, len * d}, lstm.weight_hh.data(), nullptr, gh,
                          lstm.gates_hidden, Epilogue::kNone);
            }
            cuda::lstm_gates<T>(params, gx + step * lstm.gates_hidden, step > 0 ? gh : nullptr, nullptr,
                                lstm.bias_hh.data(), step > 0 ? c : nullptr, c, padded + step * d, stream);
        }
        pack();
    } else {
        VQA_CUDA_CHECK(cudaMemcpyAsync(padded, embedded, static_cast<std::size_t>(rows * d) * sizeof(T),
                                       cudaMemcpyDeviceToDevice, stream));
        cuda::add_position<T>(padded, position_.data(), batch, len, d, stream);
        pack();
        for (std::size_t i = 0; i < text_layers_.size(); ++i) {
            self_attention_layer(lc, text_layers_[i], t, text_rows, "text.layers." + std::to_string(i));
        }
    }
    emit_mask(lc, "text_mask", {batch, len}, t_valid);
    emit_device(lc, "text_tokens", {batch, len, d}, t);
}

// §6.4 mcan and §7: text SA_i; the image tokens gathered per question (packed: each question's copy of its image's
// kept rows), SGA_i; both poolings.
template <typename T>
void Graph<T>::fuse_mcan(const LayerContext& lc, const DeviceInputs& in, const PassPacking* packing, const Fusion& f) {
    CudaContext& ctx = lc.ctx;
    const cudaStream_t stream = ctx.stream();
    const int64_t d = spec_.dim;
    const int64_t batch = f.text_rows.batch;
    const int64_t len = f.text_rows.len;
    for (std::size_t i = 0; i < fusion_text_.size(); ++i) {
        const std::string name = "fusion.text." + std::to_string(i);
        self_attention_layer(lc, fusion_text_[i], f.t, f.text_rows, name);
        emit_device(lc, name, {batch, len, d}, f.t);
    }
    SequenceRows vs;
    T* v = nullptr;
    if (packing != nullptr) {
        vs = packing->question_rows;
        v = ctx.arena().take<T>(vs.rows * d);
        cuda::gather_rows<T>(f.image_tokens, f.image_rows.rows, packing->question_source, vs.rows, d, v, stream);
    } else {
        v = ctx.arena().take<T>(batch * tokens_ * d);                   // [B, Ni, d]
        uint8_t* v_valid = ctx.arena().take<uint8_t>(batch * tokens_);  // [B, Ni]
        cuda::gather_rows<T>(f.image_tokens, f.image_rows.batch, in.image_index, batch, tokens_ * d, v, stream);
        cuda::gather_rows<uint8_t>(f.image_rows.mask, f.image_rows.batch, in.image_index, batch, tokens_, v_valid,
                                   stream);
        vs = SequenceRows::padded(batch, tokens_, v_valid);
    }
    for (std::size_t i = 0; i < fusion_image_.size(); ++i) {
        const std::string name = "fusion.image." + std::to_string(i);
        guided_attention_layer(lc, fusion_image_[i], v, vs, f.t, f.text_rows, name);
        emit_device(lc, name, {batch, tokens_, d}, v);
    }
    attention_pool(lc, pool_image_, v, vs, f.pooled_image, "pool.image", f.image_weights);
    attention_pool(lc, pool_text_, f.t, f.text_rows, f.pooled_text, "pool.text", f.text_weights);
}

// §6.4 simple and §7: text GA_i over the image tokens, whose keys, values and pooling are computed once per
// distinct image and gathered per question (packed: each question's key run points at its image's rows).
template <typename T>
void Graph<T>::fuse_simple(const LayerContext& lc,
                           const DeviceInputs& in,
                           const PassPacking* packing,
                           const Fusion& f) {
    CudaContext& ctx = lc.ctx;
    const cudaStream_t stream = ctx.stream();
    const int64_t d = spec_.dim;
    const int64_t batch = f.text_rows.batch;
    const int64_t images = f.image_rows.batch;
    const int64_t block = tokens_ * d;  // padded: one image's K (or V) in [H, Ni, Dh]
    SequenceRows ks;
    T* k = nullptr;
    T* v = nullptr;
    if (packing != nullptr) {
        ks = packing->shared_rows;
    } else {
        uint8_t* v_valid = ctx.arena().take<uint8_t>(batch * tokens_);
        cuda::gather_rows<uint8_t>(f.image_rows.mask, images, in.image_index, batch, tokens_, v_valid, stream);
        ks = SequenceRows::padded(batch, tokens_, v_valid);
        k = ctx.arena().take<T>(batch * block);
        v = ctx.arena().take<T>(batch * block);
    }
    for (std::size_t i = 0; i < fusion_cross_.size(); ++i) {
        const std::string name = "fusion.text." + std::to_string(i);
        const HeadOutputs<T> kv_images =
            project_key_value(lc, fusion_cross_[i].cross_att, f.image_tokens, f.image_rows);
        if (packing != nullptr) {
            cross_attention_layer(lc, fusion_cross_[i], f.t, f.text_rows, kv_images.group[0], kv_images.group[1], ks,
                                  name);
            continue;
        }
        cuda::gather_rows<T>(kv_images.group[0], images, in.image_index, batch, block, k, stream);
        cuda::gather_rows<T>(kv_images.group[1], images, in.image_index, batch, block, v, stream);
        cross_attention_layer(lc, fusion_cross_[i], f.t, f.text_rows, k, v, ks, name);
        emit_device(lc, name, {batch, f.text_rows.len, d}, f.t);
    }
    const int64_t out_dim = pool_image_.merge.out;
    const int64_t glimpses = pool_image_.fc2.out;
    T* pooled_images = ctx.arena().take<T>(images * out_dim);
    float* weights =
        f.image_weights != nullptr ? f.image_weights : ctx.arena().take<float>(f.image_rows.rows * glimpses);
    const LayerContext quiet{lc.ctx, lc.spec, nullptr};
    attention_pool(quiet, pool_image_, f.image_tokens, f.image_rows, pooled_images, "pool.image", weights);
    cuda::gather_rows<T>(pooled_images, images, in.image_index, batch, out_dim, f.pooled_image, stream);
    if (lc.sink != nullptr && packing == nullptr) {
        float* per_question = ctx.arena().take<float>(batch * tokens_ * glimpses);
        cuda::gather_rows<float>(weights, images, in.image_index, batch, tokens_ * glimpses, per_question, stream);
        emit_device(lc, "pool.image.weights", {batch, tokens_, glimpses}, per_question);
    }
    attention_pool(lc, pool_text_, f.t, f.text_rows, f.pooled_text, "pool.text", f.text_weights);
}

// §8 generate: greedy decoding, every step on the device (greedy_step keeps the done flags, the tokens and the
// sequence scores there), so the loop never waits for the host; rows that finished keep stepping with the batch
// and record nothing, as on the CPU.
template <typename T>
void Graph<T>::decode_greedy(
    const LayerContext& lc, const DeviceInputs& in, const T* fused, int64_t batch, ModelOutput& out) {
    const TraceRange range("head.generate", lc.ctx.stream());
    CudaContext& ctx = lc.ctx;
    const cudaStream_t stream = ctx.stream();
    const HeadConfig& head = config_.head;
    const int64_t hidden = head.hidden;
    const int64_t steps = head.max_length;
    const int64_t answers = num_answers_;
    const DeviceRecurrent<T>& cell = cell_;
    T* h = ctx.arena().take<T>(batch * hidden);
    head_init_.forward(ctx, fused, batch, h);
    cuda::bias_act<T>(h, nullptr, nullptr, h, batch, hidden, cpu::Activation::kTanh, stream);  // h0 = tanh(init(f))
    float* c = ctx.arena().take<float>(batch * hidden);                                        // LSTM: c0 = 0
    VQA_CUDA_CHECK(cudaMemsetAsync(c, 0, static_cast<std::size_t>(batch * hidden) * sizeof(float), stream));
    int32_t* token = ctx.arena().take<int32_t>(batch);
    VQA_CUDA_CHECK(cudaMemcpyAsync(token, in.bos, static_cast<std::size_t>(batch) * sizeof(int32_t),
                                   cudaMemcpyDeviceToDevice, stream));
    T* input = ctx.arena().take<T>(batch * head.embed_dim);
    T* gx = ctx.arena().take<T>(batch * cell.gates_hidden);
    T* gh = ctx.arena().take<T>(batch * cell.gates_hidden);
    float* logits = ctx.arena().take<float>(batch * answers);
    uint8_t* done = ctx.arena().take<uint8_t>(batch);
    float* scores = ctx.arena().take<float>(batch);
    int32_t* tokens = ctx.arena().take<int32_t>(batch * steps);
    std::vector<float> step_logits(lc.sink != nullptr ? static_cast<std::size_t>(batch * steps * answers) : 0, 0.0f);
    GreedyStepParams params;
    params.batch = batch;
    params.num_answers = answers;
    params.max_steps = steps;
    params.eos_id = head.eos_id;
    for (int64_t step = 0; step < steps; ++step) {
        cuda::embedding_gather<T, int32_t>(token, batch, answer_embedding_.data(), answers, head.embed_dim, input,
                                           nullptr, stream);
        linear<T>(ctx, {input, batch, head.embed_dim, 0}, cell.weight_ih.data(), nullptr, gx, cell.gates_hidden,
                  Epilogue::kNone);
        linear<T>(ctx, {h, batch, hidden, 0}, cell.weight_hh.data(), nullptr, gh, cell.gates_hidden, Epilogue::kNone);
        if (head.cell == RecurrentCell::kLstm) {
            cuda::lstm_gates<T>(lstm_cell_gates_params(batch, hidden), gx, gh, cell.bias_ih.data(), cell.bias_hh.data(),
                                c, c, h, stream);
        } else {
            cuda::gru_gates<T>(gru_cell_gates_params(batch, hidden), gx, gh, cell.bias_ih.data(), cell.bias_hh.data(),
                               h, h, stream);
        }
        linear_to_float<T>(ctx, {h, batch, hidden, 0}, head_out_.weight.data(), head_out_bias_.data(), logits, answers,
                           Epilogue::kBias);
        params.step = step;
        cuda::greedy_step<float>(params, logits, token, done, scores, tokens, stream);
        if (lc.sink != nullptr) {
            std::vector<float> host(static_cast<std::size_t>(batch * answers));
            VQA_CUDA_CHECK(
                cudaMemcpyAsync(host.data(), logits, host.size() * sizeof(float), cudaMemcpyDeviceToHost, stream));
            ctx.synchronize();
            for (int64_t b = 0; b < batch; ++b) {
                std::copy_n(host.data() + b * answers, answers, step_logits.data() + (b * steps + step) * answers);
            }
        }
    }
    std::vector<int32_t> host_tokens(static_cast<std::size_t>(batch * steps));
    out.sequence_scores.assign(static_cast<std::size_t>(batch), 0.0f);
    VQA_CUDA_CHECK(cudaMemcpyAsync(host_tokens.data(), tokens, host_tokens.size() * sizeof(int32_t),
                                   cudaMemcpyDeviceToHost, stream));
    VQA_CUDA_CHECK(cudaMemcpyAsync(out.sequence_scores.data(), scores, out.sequence_scores.size() * sizeof(float),
                                   cudaMemcpyDeviceToHost, stream));
    ctx.synchronize();
    out.tokens.assign(static_cast<std::size_t>(batch), {});
    for (int64_t b = 0; b < batch; ++b) {
        for (int64_t step = 0; step < steps; ++step) {
            const int32_t id = host_tokens[static_cast<std::size_t>(b * steps + step)];
            if (id < 0) {
                break;
            }
            out.tokens[static_cast<std::size_t>(b)].push_back(id);
        }
    }
    if (lc.sink != nullptr) {
        // Steps after a row finished are zero in the golden files, as on the CPU.
        for (int64_t b = 0; b < batch; ++b) {
            const auto recorded = static_cast<int64_t>(out.tokens[static_cast<std::size_t>(b)].size());
            std::fill(step_logits.begin() + (b * steps + recorded) * answers,
                      step_logits.begin() + (b + 1) * steps * answers, 0.0f);
        }
        (*lc.sink)("scores", {batch}, out.sequence_scores.data());
        (*lc.sink)("step_logits", {batch, steps, answers}, step_logits.data());
    }
}

// Queues the whole pass after the inputs' copy: every kernel up to the classifier's logits, copied into the
// pinned output buffer (classifier heads), or the greedy decoder (generate heads, which reads its results back
// itself). Returns nothing; the caller synchronises.
template <typename T>
void Graph<T>::run_device(const LayerContext& lc,
                          const DeviceInputs& in,
                          int64_t images,
                          int64_t batch,
                          const PassPacking* packing,
                          ModelOutput& out,
                          PoolMaps* maps) {
    CudaContext& ctx = lc.ctx;
    const cudaStream_t stream = ctx.stream();
    const int64_t len = config_.text.tokenizer.max_length;
    const int64_t d = spec_.dim;
    const SequenceRows padded_images = SequenceRows::padded(images, tokens_, nullptr);
    const int64_t image_rows_count = packing != nullptr ? packing->image_rows.rows : images * tokens_;
    T* image_tokens = ctx.arena().take<T>(image_rows_count * d);  // [Bi·Ni or Ti, d]
    // [Bi, Ni]; a packed pass has its mask from the host (plan_packing)
    uint8_t* image_valid = packing != nullptr ? nullptr : ctx.arena().take<uint8_t>(images * tokens_);
    encode_images(lc, in, images, packing, image_tokens, image_valid);
    SequenceRows image_rows = packing != nullptr ? packing->image_rows : padded_images;
    if (packing == nullptr) {
        image_rows.mask = image_valid;
    }

    uint8_t* t_valid = ctx.arena().take<uint8_t>(batch * len);  // [B, L]
    cuda::lengths_to_mask(in.lengths, batch, len, t_valid, stream);
    const SequenceRows text_rows = packing != nullptr ? packing->text_rows : SequenceRows::padded(batch, len, t_valid);
    T* t = ctx.arena().take<T>(text_rows.rows * d);  // [B·L or Tq, d]
    encode_text(lc, in, batch, len, packing, t, t_valid);

    const int64_t out_dim = config_.pool.out_dim;
    T* pooled_text = ctx.arena().take<T>(batch * out_dim);
    T* pooled_image = ctx.arena().take<T>(batch * out_dim);
    Fusion fusion{image_tokens, image_rows, t, text_rows, pooled_text, pooled_image};
    if (maps != nullptr) {
        const bool mcan = config_.fusion.type == FusionType::kMcan;
        const int64_t question_rows = packing != nullptr ? packing->question_rows.rows : batch * tokens_;
        maps->text_rows = text_rows.rows;
        maps->image_rows = mcan ? question_rows : image_rows.rows;
        maps->text = ctx.arena().take<float>(maps->text_rows * pool_text_.fc2.out);
        maps->image = ctx.arena().take<float>(maps->image_rows * pool_image_.fc2.out);
        fusion.text_weights = maps->text;
        fusion.image_weights = maps->image;
    }
    {  // the fusion layers and the poolings open their own ranges, as on the CPU
        if (config_.fusion.type == FusionType::kMcan) {
            fuse_mcan(lc, in, packing, fusion);
        } else {
            fuse_simple(lc, in, packing, fusion);
        }
    }
    emit_device(lc, "pooled_text", {batch, out_dim}, pooled_text);
    emit_device(lc, "pooled_image", {batch, out_dim}, pooled_image);
    T* fused = ctx.arena().take<T>(batch * out_dim);  // f = LN(pooled_text + pooled_image)
    {
        const TraceRange range("head.norm", stream);
        head_norm_.forward(ctx, pooled_text, pooled_image, fused, batch);
    }
    emit_device(lc, "fused", {batch, out_dim}, fused);

    if (config_.head.type == HeadType::kClassifier) {
        const TraceRange range("head.classifier", stream);
        float* logits = ctx.arena().take<float>(batch * num_answers_);
        linear_to_float<T>(ctx, {fused, batch, out_dim, 0}, classifier_.weight.data(), classifier_bias_.data(), logits,
                           num_answers_, Epilogue::kBias);
        const std::size_t bytes = static_cast<std::size_t>(batch * num_answers_) * sizeof(float);
        VQA_CUDA_CHECK(cudaMemcpyAsync(pinned_out_.reserve(bytes), logits, bytes, cudaMemcpyDeviceToHost, stream));
    } else {
        decode_greedy(lc, in, fused, batch, out);
    }
}

template <typename T>
PassPacking Graph<T>::plan_packing(const ImageBatch& images, const TextBatch& text, int64_t real_images) const {
    PassPacking packing;
    const int64_t len = config_.text.tokenizer.max_length;
    packing.text = pack_prefixes(text.lengths, text.count, len);
    std::vector<uint8_t> valid;
    if (config_.image.encoder == ImageEncoder::kRegions) {
        valid = nonzero_rows(images.regions, images.count * tokens_, region_features_);
    } else {
        valid.assign(static_cast<std::size_t>(images.count * tokens_), 1);  // grid tokens are never masked
    }
    // Images added to fill a bucket are read by no question: one row each is enough, whatever the masked-row rule.
    for (int64_t i = real_images; i < images.count; ++i) {
        std::fill_n(valid.begin() + i * tokens_, tokens_, uint8_t{0});
        valid[static_cast<std::size_t>(i * tokens_)] = 1;
    }
    packing.images = pack_valid_rows(valid.data(), images.count, tokens_, spec_.masked_row == cpu::MaskedRow::kUniform);
    if (config_.fusion.type == FusionType::kMcan) {
        packing.per_question = repeat_runs(packing.images, text.image_index, text.count);
    } else {
        packing.shared = share_runs(packing.images, text.image_index, text.count);
    }
    // Row counts in steps of kPackedRowStep: cuBLASLt plans are cached per shape, and exact counts would make a
    // new shape (and a heuristic query) of nearly every packed pass.
    pad_rows_to_multiple(packing.text, kPackedRowStep);
    pad_rows_to_multiple(packing.images, kPackedRowStep);
    pad_rows_to_multiple(packing.per_question, kPackedRowStep);
    return packing;
}

template <typename T>
bool Graph<T>::worth_packing(const PassPacking& packing, int64_t images, int64_t batch) const {
    const int64_t len = config_.text.tokenizer.max_length;
    const bool mcan = config_.fusion.type == FusionType::kMcan;
    const int64_t padded = batch * len + (mcan ? batch : images) * tokens_;
    const int64_t packed = packing.text.total() + (mcan ? packing.per_question.total() : packing.images.total());
    return packed < padded;
}

template <typename T>
void Graph<T>::shape_for_graph(PassPacking& packing, int64_t images, int64_t batch) const {
    const int64_t len = config_.text.tokenizer.max_length;
    shape_runs_for_graph(packing.text, batch * len, len);
    shape_runs_for_graph(packing.images, images * tokens_, tokens_);
    shape_runs_for_graph(packing.per_question, batch * tokens_, tokens_);
}

template class Graph<float>;
template class Graph<__half>;
template class Graph<__nv_bfloat16>;

}  // namespace vqa::gpu

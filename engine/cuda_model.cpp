// The model of docs/model-format.md on the GPU (engine/cuda_model.h): the same graph as engine/cpu_model.cpp, on
// the layers of engine/cuda_layers.cpp and the trunk of engine/cuda_image_encoder.cpp.
#include "engine/cuda_model.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/cuda_image_encoder.h"
#include "engine/cuda_layers.h"
#include "engine/cuda_runtime.h"
#include "engine/model_weights.h"
#include "engine/packing.h"
#include "kernels/bias_act.h"
#include "kernels/check.h"
#include "kernels/embedding_gather.h"
#include "kernels/fused_attention.h"
#include "kernels/rnn.h"
#include "kernels/tensor_ops.h"
#include "kernels/topk.h"
#include "kernels/trace.h"

namespace vqa {
namespace gpu {
namespace {

// PyTorch recurrent weights on the device (gates stacked as in cpu_layers::RecurrentWeights).
template <typename T>
struct DeviceRecurrent {
    DeviceBuffer<T> weight_ih;  // [G·Hd, E]
    DeviceBuffer<T> weight_hh;  // [G·Hd, Hd]
    DeviceBuffer<T> bias_ih;    // [G·Hd]
    DeviceBuffer<T> bias_hh;    // [G·Hd]
    int64_t gates_hidden = 0;   // G·Hd
    int64_t input = 0;          // E
    int64_t hidden = 0;         // Hd

    static DeviceRecurrent upload(const cpu_layers::RecurrentWeights& host, int64_t gates, int64_t hidden) {
        DeviceRecurrent r;
        r.weight_ih = DeviceBuffer<T>::upload(to_element_type<T>(host.weight_ih));
        r.weight_hh = DeviceBuffer<T>::upload(to_element_type<T>(host.weight_hh));
        r.bias_ih = DeviceBuffer<T>::upload(to_element_type<T>(host.bias_ih));
        r.bias_hh = DeviceBuffer<T>::upload(to_element_type<T>(host.bias_hh));
        r.gates_hidden = gates * hidden;
        r.hidden = hidden;
        r.input = hidden > 0 ? static_cast<int64_t>(host.weight_ih.size()) / (gates * hidden) : 0;
        return r;
    }
};

// Where the inputs of one pass landed on the device.
struct DeviceInputs {
    const int64_t* ids = nullptr;          // [B, L]
    const int64_t* lengths = nullptr;      // [B]
    const int64_t* image_index = nullptr;  // [B]
    const float* pixels = nullptr;         // [Bi, 3, H, W]
    const float* regions = nullptr;        // [Bi, N, F]
    const float* boxes5 = nullptr;         // [Bi, N, 5]
    const int32_t* bos = nullptr;          // [B], generate heads: the first decoder input
};

// The packed layout of one pass (engine/packing.h): the host runs, and where their arrays landed on the device.
struct PassPacking {
    PackedSequences text;          // each question's token rows (source: rows of [B, L])
    PackedSequences images;        // each distinct image's kept tokens (source: rows of [Bi, Ni])
    PackedSequences per_question;  // mcan: each question's copy of its image's run (source: packed image rows)
    SharedRuns shared;             // simple: each question's keys are its image's run, read in place
    // Filled by stage_inputs: device views of the runs and the gather indices.
    SequenceRows text_rows;
    SequenceRows image_rows;
    SequenceRows question_rows;
    SequenceRows shared_rows;
    const int64_t* text_source = nullptr;
    const int64_t* image_source = nullptr;
    const int64_t* question_source = nullptr;
};

// Packs host arrays into one pinned buffer, copies it to one arena slice with a single cudaMemcpyAsync, and
// hands out the device address of each array.
class InputStaging {
public:
    template <typename U>
    std::size_t add(const U* data, int64_t count) {
        const std::size_t offset = bytes_;
        parts_.push_back({data, static_cast<std::size_t>(count) * sizeof(U), offset});
        bytes_ = (offset + parts_.back().bytes + DeviceArena::kAlignment - 1) / DeviceArena::kAlignment *
                 DeviceArena::kAlignment;
        return offset;
    }
    std::size_t bytes() const { return bytes_; }
    // Copies every array into the pinned buffer (host work only).
    void pack(PinnedBuffer& pinned) const {
        auto* host = static_cast<char*>(pinned.reserve(std::max<std::size_t>(bytes_, 1)));
        for (const Part& part : parts_) {
            if (part.data != nullptr && part.bytes > 0) {  // null: a slot reserved but unused this pass
                std::memcpy(host + part.offset, part.data, part.bytes);
            }
        }
    }
    // Queues one copy of the packed arrays into an arena slice; returns its device address.
    char* copy_to_device(CudaContext& ctx, const PinnedBuffer& pinned) const {
        char* device = static_cast<char*>(ctx.arena().take_bytes(bytes_));
        if (bytes_ > 0) {
            VQA_CUDA_CHECK(cudaMemcpyAsync(device, pinned.data(), bytes_, cudaMemcpyHostToDevice, ctx.stream()));
        }
        return device;
    }

private:
    struct Part {
        const void* data;
        std::size_t bytes;
        std::size_t offset;
    };
    std::vector<Part> parts_;
    std::size_t bytes_ = 0;
};

enum class PackingMode { kAuto, kPadded, kPacked };

// With CUDA graphs on, a pass is packed from this many questions up (and when packing drops a quarter of the rows).
constexpr int64_t kPackedMinBatch = 16;
// Packed row counts are rounded up to a multiple of this (engine/packing.h, pad_rows_to_multiple).
constexpr int64_t kPackedRowStep = 64;

// The graph in one element type.
class GraphBase {
public:
    virtual ~GraphBase() = default;
    // packing: kAuto lets the pass decide (see Graph::forward); the load passes force each layout once.
    virtual ModelOutput forward(const ImageBatch& images,
                                const TextBatch& text,
                                const ActivationSink* sink,
                                PackingMode packing) = 0;
    virtual void set_use_graphs(bool use) = 0;
    virtual void set_pack_sequences(bool pack) = 0;
};

}  // namespace
}  // namespace gpu

struct CudaModel::Impl {
    ModelConfig config;
    int64_t num_answers = 0;
    int64_t image_tokens = 0;
    int64_t max_batch = 0;
    int64_t vocab_rows = 0;
    std::size_t weight_bytes = 0;  // device memory the upload took (weights, and the library handles' own)
    std::unique_ptr<gpu::CudaContext> ctx;
    std::unique_ptr<gpu::GraphBase> graph;
};

namespace gpu {
namespace {

template <typename T>
class Graph final : public GraphBase {
public:
    Graph(CudaContext& ctx, const cpu_layers::ModelWeights& w, int64_t max_batch)
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

    ModelOutput forward(const ImageBatch& images,
                        const TextBatch& text,
                        const ActivationSink* sink,
                        PackingMode packing) override;
    void set_use_graphs(bool use) override { use_graphs_ = use; }
    void set_pack_sequences(bool pack) override { pack_sequences_ = pack; }

    ~Graph() override {
        for (auto& entry : graphs_) {
            if (entry.second != nullptr) {
                VQA_CUDA_CHECK_NOTHROW(cudaGraphExecDestroy(entry.second));
            }
        }
    }

private:
    // packing, when given, has its device views filled (stage_inputs); null runs the padded layout.
    void run_device(const LayerContext& lc,
                    const DeviceInputs& in,
                    int64_t images,
                    int64_t batch,
                    const PassPacking* packing,
                    ModelOutput& out);
    ModelOutput read_logits(int64_t batch) const;
    ModelOutput run_eager(const ImageBatch& images,
                          const TextBatch& text,
                          const ActivationSink* sink,
                          PassPacking* packing = nullptr);
    ModelOutput run_graph(const ImageBatch& images, const TextBatch& text);
    void drop_graphs_if_arena_moved();
    void drop_graphs();
    // The runs of a pass with its padding removed (host work: the regions' validity is read from the host copy).
    PassPacking plan_packing(const ImageBatch& images, const TextBatch& text) const;
    // Whether a pass that could be packed should be: see forward().
    bool worth_packing(const PassPacking& packing, int64_t images, int64_t batch) const;
    // Packs the inputs into pinned memory and, with to_device, queues their copy into the arena (a CUDA graph's
    // replay only needs the packing: its captured copy reads the same pinned addresses). With `packing`, its runs
    // travel in the same copy and its device views are filled in.
    DeviceInputs stage_inputs(
        const ImageBatch& images, const TextBatch& text, int64_t len, bool to_device, PassPacking* packing = nullptr);
    // tokens: [Bi·Ni, d] padded, or the packed rows of packing->image_rows.
    void encode_images(const LayerContext& lc,
                       const DeviceInputs& in,
                       int64_t count,
                       const PassPacking* packing,
                       T* tokens,
                       uint8_t* valid);
    // t: [B·L, d] padded, or the packed rows of packing->text_rows.
    void encode_text(const LayerContext& lc,
                     const DeviceInputs& in,
                     int64_t batch,
                     int64_t len,
                     const PassPacking* packing,
                     T* t,
                     const uint8_t* t_valid);
    void fuse_mcan(const LayerContext& lc,
                   const DeviceInputs& in,
                   const T* image_tokens,
                   const SequenceRows& image_rows,
                   const PassPacking* packing,
                   T* t,
                   const SequenceRows& text_rows,
                   T* pooled_text,
                   T* pooled_image);
    void fuse_simple(const LayerContext& lc,
                     const DeviceInputs& in,
                     const T* image_tokens,
                     const SequenceRows& image_rows,
                     const PassPacking* packing,
                     T* t,
                     const SequenceRows& text_rows,
                     T* pooled_text,
                     T* pooled_image);
    void decode_greedy(const LayerContext& lc, const DeviceInputs& in, const T* fused, int64_t batch, ModelOutput& out);

    CudaContext& ctx_;
    ModelConfig config_;
    cpu_layers::AttentionSpec spec_;
    int64_t vocab_rows_ = 0;
    int64_t num_answers_ = 0;
    int64_t tokens_ = 0;          // Ni
    int64_t trunk_features_ = 0;  // C_img
    int64_t region_features_ = 0;
    int64_t max_batch_ = 0;
    bool use_graphs_ = true;
    bool pack_sequences_ = true;
    PinnedBuffer pinned_in_;
    PinnedBuffer pinned_out_;
    // One instantiated CUDA graph per (questions, images) bucket; null until the bucket's second pass.
    std::map<std::pair<int64_t, int64_t>, cudaGraphExec_t> graphs_;
    uint64_t graphs_arena_generation_ = 0;  // the arena generation the non-null graphs were captured in
    // Host copies of a padded batch (kept to reuse their capacity).
    std::vector<int64_t> padded_ids_;
    std::vector<int64_t> padded_lengths_;
    std::vector<int64_t> padded_index_;
    std::vector<float> padded_pixels_;
    std::vector<float> padded_regions_;
    std::vector<float> padded_boxes_;

    std::unique_ptr<CudaImageTrunk<T>> trunk_;
    DeviceLinear<T> box_;
    DeviceLinear<T> adapter_;
    DeviceBuffer<T> embedding_;
    DeviceRecurrent<T> text_lstm_;
    DeviceBuffer<T> position_;
    std::vector<DeviceSelfAttentionLayer<T>> text_layers_;
    std::vector<DeviceSelfAttentionLayer<T>> fusion_text_;
    std::vector<DeviceGuidedAttentionLayer<T>> fusion_image_;
    std::vector<DeviceCrossAttentionLayer<T>> fusion_cross_;
    DeviceAttentionPool<T> pool_text_;
    DeviceAttentionPool<T> pool_image_;
    DeviceLayerNorm head_norm_;
    DeviceLinear<T> classifier_;
    DeviceBuffer<float> classifier_bias_;
    DeviceLinear<T> head_init_;
    DeviceBuffer<T> answer_embedding_;
    DeviceRecurrent<T> cell_;
    DeviceLinear<T> head_out_;
    DeviceBuffer<float> head_out_bias_;
};

// Where one PackedSequences' arrays sit in the staged copy.
struct StagedRuns {
    std::size_t source = 0;
    std::size_t offsets = 0;
    std::size_t starts = 0;
    std::size_t counts = 0;
    std::size_t mask = 0;
    std::vector<int64_t> source64;  // gather_rows takes int64 indices

    // Adds the runs (and their gather index, with_source) to the staging.
    void add(InputStaging& staging, const PackedSequences& runs, bool with_source) {
        if (with_source) {
            source64.assign(runs.source.begin(), runs.source.end());
            source = staging.add(source64.data(), runs.total());
        }
        offsets = staging.add(runs.offsets.data(), runs.sequences() + 1);
        starts = staging.add(runs.starts.data(), runs.sequences());
        counts = staging.add(runs.counts.data(), runs.sequences());
        // The mask's slot is there even when this pass has no mask: the staged bytes then grow with the rows
        // only, so the load pass (every row valid) sizes the pinned buffer and the arena for every packed pass.
        mask = staging.add(runs.mask.empty() ? nullptr : runs.mask.data(), runs.total());
    }
    SequenceRows view(const PackedSequences& runs, const char* base) const {
        SequenceRows rows = runs.view();
        rows.mask = runs.mask.empty() ? nullptr : reinterpret_cast<const uint8_t*>(base + mask);
        rows.offsets = reinterpret_cast<const int32_t*>(base + offsets);
        rows.starts = reinterpret_cast<const int32_t*>(base + starts);
        rows.counts = reinterpret_cast<const int32_t*>(base + counts);
        return rows;
    }
    const int64_t* source_on_device(const char* base) const { return reinterpret_cast<const int64_t*>(base + source); }
};

template <typename T>
DeviceInputs Graph<T>::stage_inputs(
    const ImageBatch& images, const TextBatch& text, int64_t len, bool to_device, PassPacking* packing) {
    const int64_t b = text.count;
    InputStaging staging;
    const std::size_t ids = staging.add(text.ids, b * len);
    const std::size_t lengths = staging.add(text.lengths, b);
    const std::size_t image_index = staging.add(text.image_index, b);
    std::size_t pixels = 0;
    std::size_t regions = 0;
    std::size_t boxes = 0;
    if (config_.image.encoder == ImageEncoder::kRegions) {
        regions = staging.add(images.regions, images.count * tokens_ * region_features_);
        if (box_.out > 0) {
            boxes = staging.add(images.boxes5, images.count * tokens_ * 5);
        }
    } else {
        const ImageInputConfig& input = config_.image.input;
        pixels = staging.add(images.pixels, images.count * 3 * int64_t{input.height} * input.width);
    }
    std::vector<int32_t> bos;
    std::size_t bos_offset = 0;
    if (config_.head.type == HeadType::kGenerate) {
        bos.assign(static_cast<std::size_t>(b), config_.head.bos_id);
        bos_offset = staging.add(bos.data(), b);
    }
    StagedRuns text_runs;
    StagedRuns image_runs;
    StagedRuns question_runs;
    std::size_t shared_starts = 0;
    std::size_t shared_counts = 0;
    if (packing != nullptr) {
        text_runs.add(staging, packing->text, true);
        image_runs.add(staging, packing->images, true);
        if (config_.fusion.type == FusionType::kMcan) {
            question_runs.add(staging, packing->per_question, true);
        } else {
            shared_starts = staging.add(packing->shared.starts.data(), b);
            shared_counts = staging.add(packing->shared.counts.data(), b);
        }
    }
    if (staging.bytes() > pinned_in_.capacity()) {
        drop_graphs();  // pack() reallocates the pinned buffer that every captured input copy reads
    }
    staging.pack(pinned_in_);
    DeviceInputs in;
    if (!to_device) {
        return in;
    }
    char* base = staging.copy_to_device(ctx_, pinned_in_);
    in.ids = reinterpret_cast<const int64_t*>(base + ids);
    in.lengths = reinterpret_cast<const int64_t*>(base + lengths);
    in.image_index = reinterpret_cast<const int64_t*>(base + image_index);
    if (config_.image.encoder == ImageEncoder::kRegions) {
        in.regions = reinterpret_cast<const float*>(base + regions);
        in.boxes5 = box_.out > 0 ? reinterpret_cast<const float*>(base + boxes) : nullptr;
    } else {
        in.pixels = reinterpret_cast<const float*>(base + pixels);
    }
    if (!bos.empty()) {
        in.bos = reinterpret_cast<const int32_t*>(base + bos_offset);
    }
    if (packing != nullptr) {
        packing->text_rows = text_runs.view(packing->text, base);
        packing->text_source = text_runs.source_on_device(base);
        packing->image_rows = image_runs.view(packing->images, base);
        packing->image_source = image_runs.source_on_device(base);
        if (config_.fusion.type == FusionType::kMcan) {
            packing->question_rows = question_runs.view(packing->per_question, base);
            packing->question_source = question_runs.source_on_device(base);
        } else {
            packing->shared_rows = packing->shared.view(packing->images);
            packing->shared_rows.mask = packing->image_rows.mask;
            packing->shared_rows.starts = reinterpret_cast<const int32_t*>(base + shared_starts);
            packing->shared_rows.counts = reinterpret_cast<const int32_t*>(base + shared_counts);
        }
    }
    return in;
}

// §4: tokens [Bi, Ni, d] and their mask [Bi, Ni] (1 = valid); packed, the kept rows only go through the adapter.
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
        VQA_CUDA_CHECK(cudaMemsetAsync(valid, 1, static_cast<std::size_t>(rows), stream));
    } else {
        // Regions: an all-zero feature row is padding (masked); the box branch's columns follow the features.
        const int64_t f = region_features_;
        cuda::nonzero_row_mask<float>(in.regions, rows, f, valid, stream);
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
void Graph<T>::fuse_mcan(const LayerContext& lc,
                         const DeviceInputs& in,
                         const T* image_tokens,
                         const SequenceRows& image_rows,
                         const PassPacking* packing,
                         T* t,
                         const SequenceRows& text_rows,
                         T* pooled_text,
                         T* pooled_image) {
    CudaContext& ctx = lc.ctx;
    const cudaStream_t stream = ctx.stream();
    const int64_t d = spec_.dim;
    const int64_t batch = text_rows.batch;
    const int64_t len = text_rows.len;
    for (std::size_t i = 0; i < fusion_text_.size(); ++i) {
        const std::string name = "fusion.text." + std::to_string(i);
        self_attention_layer(lc, fusion_text_[i], t, text_rows, name);
        emit_device(lc, name, {batch, len, d}, t);
    }
    SequenceRows vs;
    T* v = nullptr;
    if (packing != nullptr) {
        vs = packing->question_rows;
        v = ctx.arena().take<T>(vs.rows * d);
        cuda::gather_rows<T>(image_tokens, image_rows.rows, packing->question_source, vs.rows, d, v, stream);
    } else {
        v = ctx.arena().take<T>(batch * tokens_ * d);                   // [B, Ni, d]
        uint8_t* v_valid = ctx.arena().take<uint8_t>(batch * tokens_);  // [B, Ni]
        cuda::gather_rows<T>(image_tokens, image_rows.batch, in.image_index, batch, tokens_ * d, v, stream);
        cuda::gather_rows<uint8_t>(image_rows.mask, image_rows.batch, in.image_index, batch, tokens_, v_valid, stream);
        vs = SequenceRows::padded(batch, tokens_, v_valid);
    }
    for (std::size_t i = 0; i < fusion_image_.size(); ++i) {
        const std::string name = "fusion.image." + std::to_string(i);
        guided_attention_layer(lc, fusion_image_[i], v, vs, t, text_rows, name);
        emit_device(lc, name, {batch, tokens_, d}, v);
    }
    attention_pool(lc, pool_image_, v, vs, pooled_image, "pool.image");
    attention_pool(lc, pool_text_, t, text_rows, pooled_text, "pool.text");
}

// §6.4 simple and §7: text GA_i over the image tokens, whose keys, values and pooling are computed once per
// distinct image and gathered per question (packed: each question's key run points at its image's rows).
template <typename T>
void Graph<T>::fuse_simple(const LayerContext& lc,
                           const DeviceInputs& in,
                           const T* image_tokens,
                           const SequenceRows& image_rows,
                           const PassPacking* packing,
                           T* t,
                           const SequenceRows& text_rows,
                           T* pooled_text,
                           T* pooled_image) {
    CudaContext& ctx = lc.ctx;
    const cudaStream_t stream = ctx.stream();
    const int64_t d = spec_.dim;
    const int64_t batch = text_rows.batch;
    const int64_t images = image_rows.batch;
    const int64_t block = tokens_ * d;  // padded: one image's K (or V) in [H, Ni, Dh]
    SequenceRows ks;
    T* k = nullptr;
    T* v = nullptr;
    if (packing != nullptr) {
        ks = packing->shared_rows;
    } else {
        uint8_t* v_valid = ctx.arena().take<uint8_t>(batch * tokens_);
        cuda::gather_rows<uint8_t>(image_rows.mask, images, in.image_index, batch, tokens_, v_valid, stream);
        ks = SequenceRows::padded(batch, tokens_, v_valid);
        k = ctx.arena().take<T>(batch * block);
        v = ctx.arena().take<T>(batch * block);
    }
    for (std::size_t i = 0; i < fusion_cross_.size(); ++i) {
        const std::string name = "fusion.text." + std::to_string(i);
        const HeadOutputs<T> kv_images = project_key_value(lc, fusion_cross_[i].cross_att, image_tokens, image_rows);
        if (packing != nullptr) {
            cross_attention_layer(lc, fusion_cross_[i], t, text_rows, kv_images.group[0], kv_images.group[1], ks, name);
            continue;
        }
        cuda::gather_rows<T>(kv_images.group[0], images, in.image_index, batch, block, k, stream);
        cuda::gather_rows<T>(kv_images.group[1], images, in.image_index, batch, block, v, stream);
        cross_attention_layer(lc, fusion_cross_[i], t, text_rows, k, v, ks, name);
        emit_device(lc, name, {batch, text_rows.len, d}, t);
    }
    const int64_t out_dim = pool_image_.merge.out;
    const int64_t glimpses = pool_image_.fc2.out;
    T* pooled_images = ctx.arena().take<T>(images * out_dim);
    float* weights = ctx.arena().take<float>(image_rows.rows * glimpses);
    const LayerContext quiet{lc.ctx, lc.spec, nullptr};
    attention_pool(quiet, pool_image_, image_tokens, image_rows, pooled_images, "pool.image", weights);
    cuda::gather_rows<T>(pooled_images, images, in.image_index, batch, out_dim, pooled_image, stream);
    if (lc.sink != nullptr && packing == nullptr) {
        float* per_question = ctx.arena().take<float>(batch * tokens_ * glimpses);
        cuda::gather_rows<float>(weights, images, in.image_index, batch, tokens_ * glimpses, per_question, stream);
        emit_device(lc, "pool.image.weights", {batch, tokens_, glimpses}, per_question);
    }
    attention_pool(lc, pool_text_, t, text_rows, pooled_text, "pool.text");
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
                          ModelOutput& out) {
    CudaContext& ctx = lc.ctx;
    const cudaStream_t stream = ctx.stream();
    const int64_t len = config_.text.tokenizer.max_length;
    const int64_t d = spec_.dim;
    const SequenceRows padded_images = SequenceRows::padded(images, tokens_, nullptr);
    const int64_t image_rows_count = packing != nullptr ? packing->image_rows.rows : images * tokens_;
    T* image_tokens = ctx.arena().take<T>(image_rows_count * d);         // [Bi·Ni or Ti, d]
    uint8_t* image_valid = ctx.arena().take<uint8_t>(images * tokens_);  // [Bi, Ni]
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
    {  // the fusion layers and the poolings open their own ranges, as on the CPU
        if (config_.fusion.type == FusionType::kMcan) {
            fuse_mcan(lc, in, image_tokens, image_rows, packing, t, text_rows, pooled_text, pooled_image);
        } else {
            fuse_simple(lc, in, image_tokens, image_rows, packing, t, text_rows, pooled_text, pooled_image);
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
ModelOutput Graph<T>::read_logits(int64_t batch) const {
    ModelOutput out;
    const auto* host = static_cast<const float*>(pinned_out_.data());
    out.logits.assign(host, host + batch * num_answers_);
    return out;
}

template <typename T>
ModelOutput Graph<T>::run_eager(const ImageBatch& images,
                                const TextBatch& text,
                                const ActivationSink* sink,
                                PassPacking* packing) {
    const LayerContext lc{ctx_, spec_, sink};
    ctx_.arena().reset();
    const DeviceInputs in = stage_inputs(images, text, config_.text.tokenizer.max_length, true, packing);
    ModelOutput out;
    run_device(lc, in, images.count, text.count, packing, out);
    ctx_.synchronize();
    if (config_.head.type == HeadType::kClassifier) {
        out = read_logits(text.count);
        if (sink != nullptr) {
            (*sink)("logits", {text.count, num_answers_}, out.logits.data());
        }
    }
    return out;
}

// Bucket sizes: powers of two up to max_batch, which is its own last bucket.
int64_t bucket_of(int64_t n, int64_t max_batch) {
    int64_t bucket = 1;
    while (bucket < n) {
        bucket *= 2;
    }
    return std::min(bucket, max_batch);
}

// reset() replaces the arena's chunks after a pass outgrew them (a pass with an activation sink takes more than the
// load passes sized the arena for): every graph captured before then reads and writes freed device memory. Such
// graphs are dropped and captured again on their bucket's next pass.
template <typename T>
void Graph<T>::drop_graphs_if_arena_moved() {
    if (ctx_.arena().generation() == graphs_arena_generation_) {
        return;
    }
    drop_graphs();
    graphs_arena_generation_ = ctx_.arena().generation();
}

// Destroys every instantiated graph; each is captured again on its bucket's next pass.
template <typename T>
void Graph<T>::drop_graphs() {
    for (auto& entry : graphs_) {
        if (entry.second != nullptr) {
            VQA_CUDA_CHECK(cudaGraphExecDestroy(entry.second));
            entry.second = nullptr;
        }
    }
}

template <typename T>
ModelOutput Graph<T>::run_graph(const ImageBatch& images, const TextBatch& text) {
    // Pad to the bucket: extra questions repeat question 0 (about image 0), extra images are zeros that no question
    // reads. Each row of the model depends on its own question and image only, so the real rows are unchanged.
    const int64_t len = config_.text.tokenizer.max_length;
    const int64_t batch = bucket_of(text.count, max_batch_);
    const int64_t image_count = bucket_of(images.count, max_batch_);
    padded_ids_.assign(text.ids, text.ids + text.count * len);
    padded_lengths_.assign(text.lengths, text.lengths + text.count);
    padded_index_.assign(text.image_index, text.image_index + text.count);
    for (int64_t b = text.count; b < batch; ++b) {
        padded_ids_.insert(padded_ids_.end(), text.ids, text.ids + len);
        padded_lengths_.push_back(text.lengths[0]);
        padded_index_.push_back(0);
    }
    ImageBatch padded_images = images;
    padded_images.count = image_count;
    const auto pad_images = [&](const float* data, int64_t per_image, std::vector<float>& padded) -> const float* {
        if (data == nullptr || image_count == images.count) {
            return data;
        }
        padded.assign(data, data + images.count * per_image);
        padded.resize(static_cast<std::size_t>(image_count * per_image), 0.0f);
        return padded.data();
    };
    const ImageInputConfig& input = config_.image.input;
    padded_images.pixels = pad_images(images.pixels, 3 * int64_t{input.height} * input.width, padded_pixels_);
    padded_images.regions = pad_images(images.regions, tokens_ * region_features_, padded_regions_);
    padded_images.boxes5 = pad_images(images.boxes5, tokens_ * 5, padded_boxes_);
    const TextBatch padded_text{batch, padded_ids_.data(), padded_lengths_.data(), padded_index_.data()};

    drop_graphs_if_arena_moved();
    const auto key = std::make_pair(batch, image_count);
    auto found = graphs_.find(key);
    if (found == graphs_.end()) {
        // First pass of a bucket: eager, which plans every cuBLASLt and cuDNN call of this shape; the next pass
        // captures the then plan-free sequence of launches.
        ModelOutput out = run_eager(padded_images, padded_text, nullptr);
        graphs_.emplace(key, nullptr);
        out.logits.resize(static_cast<std::size_t>(text.count * num_answers_));
        return out;
    }
    if (found->second == nullptr) {
        const LayerContext lc{ctx_, spec_, nullptr};
        ctx_.arena().reset();
        drop_graphs_if_arena_moved();
        const std::size_t arena_chunks = static_cast<std::size_t>(ctx_.arena().chunk_count());
        cudaGraph_t graph = nullptr;
        VQA_CUDA_CHECK(cudaStreamBeginCapture(ctx_.stream(), cudaStreamCaptureModeThreadLocal));
        ModelOutput unused;
        try {
            const DeviceInputs in = stage_inputs(padded_images, padded_text, len, true);
            run_device(lc, in, image_count, batch, nullptr, unused);
        } catch (...) {
            cudaGraph_t abandoned = nullptr;
            cudaStreamEndCapture(ctx_.stream(), &abandoned);
            if (abandoned != nullptr) {
                cudaGraphDestroy(abandoned);
            }
            throw;
        }
        VQA_CUDA_CHECK(cudaStreamEndCapture(ctx_.stream(), &graph));
        VQA_CHECK(static_cast<std::size_t>(ctx_.arena().chunk_count()) == arena_chunks, kInternal,
                  "CUDA graph capture: the workspace arena grew during capture");
        cudaGraphExec_t exec = nullptr;
        const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
        cudaGraphDestroy(graph);
        VQA_CUDA_CHECK(status);
        found->second = exec;
    } else {
        stage_inputs(padded_images, padded_text, len, false);  // the captured copy reads the pinned buffer
    }
    VQA_CUDA_CHECK(cudaGraphLaunch(found->second, ctx_.stream()));
    ctx_.synchronize();
    return read_logits(text.count);
}

template <typename T>
PassPacking Graph<T>::plan_packing(const ImageBatch& images, const TextBatch& text) const {
    PassPacking packing;
    const int64_t len = config_.text.tokenizer.max_length;
    packing.text = pack_prefixes(text.lengths, text.count, len);
    std::vector<uint8_t> valid;
    if (config_.image.encoder == ImageEncoder::kRegions) {
        valid = nonzero_rows(images.regions, images.count * tokens_, region_features_);
    } else {
        valid.assign(static_cast<std::size_t>(images.count * tokens_), 1);  // grid tokens are never masked
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

// The rows the layers process either way: text, plus the image rows of the fusion stack (per question for mcan,
// per distinct image for simple).
template <typename T>
bool Graph<T>::worth_packing(const PassPacking& packing, int64_t images, int64_t batch) const {
    const int64_t len = config_.text.tokenizer.max_length;
    const bool mcan = config_.fusion.type == FusionType::kMcan;
    const int64_t padded = batch * len + (mcan ? batch : images) * tokens_;
    const int64_t packed = packing.text.total() + (mcan ? packing.per_question.total() : packing.images.total());
    const bool graphs = use_graphs_ && config_.head.type == HeadType::kClassifier;
    if (!graphs) {
        return packed < padded;
    }
    // A packed pass runs eagerly (its shapes change from pass to pass) while a padded one replays a CUDA graph: for
    // small batches the launches dominate and the graph wins; docs/padding-removal.md.
    return batch >= kPackedMinBatch && packed * 4 <= padded * 3;
}

template <typename T>
ModelOutput Graph<T>::forward(const ImageBatch& images,
                              const TextBatch& text,
                              const ActivationSink* sink,
                              PackingMode packing_mode) {
    // A sink gets every tensor in the padded layout of the golden files, so its passes are padded.
    if (sink == nullptr && packing_mode != PackingMode::kPadded &&
        (pack_sequences_ || packing_mode == PackingMode::kPacked)) {
        PassPacking packing = plan_packing(images, text);
        if (packing_mode == PackingMode::kPacked || worth_packing(packing, images.count, text.count)) {
            return run_eager(images, text, nullptr, &packing);
        }
    }
    // CUDA graphs replay a fixed sequence of launches: for classifier heads without a sink or a recording profile
    // (a profile wants each stage's events, which a replay does not record).
    const bool recording = vqa::detail::trace_thread_state.recorder != nullptr;
    if (use_graphs_ && sink == nullptr && !recording && config_.head.type == HeadType::kClassifier) {
        return run_graph(images, text);
    }
    return run_eager(images, text, sink);
}

// The host-side checks of CpuModel::forward, and the ids against the vocabulary (the device gather cannot throw).
void check_inputs(const ImageBatch& images,
                  const TextBatch& text,
                  int64_t max_length,
                  int64_t vocab_rows,
                  int64_t max_batch,
                  const ImageConfig& image) {
    VQA_CHECK(text.count >= 0, kInvalidArgument, "CudaModel::forward: TextBatch::count must be >= 0, got ", text.count);
    if (text.count == 0) {
        return;
    }
    VQA_CHECK(text.ids != nullptr && text.lengths != nullptr && text.image_index != nullptr, kInvalidArgument,
              "CudaModel::forward: TextBatch ids, lengths and image_index must not be null");
    VQA_CHECK(images.count >= 1 && images.count <= max_batch && text.count <= max_batch, kInvalidArgument,
              "CudaModel::forward: expected 1..", max_batch, " images and 0..", max_batch,
              " questions per pass (max_batch), got ", images.count, " and ", text.count);
    // The inputs are read on the host (packed into pinned memory), so a missing one must be an error, not a crash.
    if (image.encoder == ImageEncoder::kRegions) {
        VQA_CHECK(images.regions != nullptr, kInvalidArgument,
                  "CudaModel::forward: the regions encoder needs ImageBatch::regions [Bi, N, F]");
        VQA_CHECK(!image.regions.box_features || images.boxes5 != nullptr, kInvalidArgument,
                  "CudaModel::forward: this model uses box features; ImageBatch::boxes5 [Bi, N, 5] is required");
    } else {
        VQA_CHECK(images.pixels != nullptr, kInvalidArgument,
                  "CudaModel::forward: a grid encoder needs ImageBatch::pixels [Bi, 3, ", image.input.height, ", ",
                  image.input.width, "]");
    }
    for (int64_t b = 0; b < text.count; ++b) {
        VQA_CHECK(text.lengths[b] >= 1 && text.lengths[b] <= max_length, kInvalidArgument,
                  "CudaModel::forward: question ", b, " has length ", text.lengths[b], ", expected 1..", max_length);
        VQA_CHECK(text.image_index[b] >= 0 && text.image_index[b] < images.count, kInvalidArgument,
                  "CudaModel::forward: question ", b, " has image_index ", text.image_index[b], ", expected 0..",
                  images.count - 1);
        for (int64_t l = 0; l < max_length; ++l) {
            const int64_t id = text.ids[b * max_length + l];
            VQA_CHECK(id >= 0 && id < vocab_rows, kInvalidArgument, "CudaModel::forward: question ", b, " position ", l,
                      " has token id ", id, ", outside the vocabulary [0, ", vocab_rows, ")");
        }
    }
}

template <typename T>
std::unique_ptr<GraphBase> make_graph(CudaContext& ctx, const cpu_layers::ModelWeights& w, int64_t max_batch) {
    return std::make_unique<Graph<T>>(ctx, w, max_batch);
}

}  // namespace
}  // namespace gpu

CudaModel::CudaModel(const ModelDir& dir, const CudaModelOptions& options) : impl_(std::make_unique<Impl>()) {
    VQA_CHECK(options.max_batch >= 1, kInvalidArgument, "CudaModel: max_batch must be >= 1, got ", options.max_batch);
    VQA_CHECK(!dir.answers.empty(), kModelFormat, "answers.json: expected at least one answer");
    const TraceRange range("upload");
    impl_->max_batch = options.max_batch;
    const gpu::DeviceScope scope(options.device);
    std::size_t free_before = 0;
    std::size_t total = 0;
    VQA_CUDA_CHECK(cudaMemGetInfo(&free_before, &total));
    impl_->ctx = std::make_unique<gpu::CudaContext>(options.device);
    {
        // The host copies of the converted weights live only until they are on the device.
        const cpu_layers::WeightReader reader(dir.weights);
        const cpu_layers::ModelWeights weights(dir, reader);
        VQA_CHECK(weights.spec.head_dim() <= kFusedAttentionMaxHeadDim, kUnsupported,
                  "the CUDA backend runs heads of up to ", kFusedAttentionMaxHeadDim, " dimensions; this model's are ",
                  weights.spec.head_dim());
        impl_->config = weights.config;
        impl_->num_answers = weights.num_answers;
        impl_->image_tokens = weights.trunk.tokens();
        impl_->vocab_rows = weights.vocab_rows;
        switch (options.precision) {
            case Precision::kFp32:
                impl_->graph = gpu::make_graph<float>(*impl_->ctx, weights, options.max_batch);
                break;
            case Precision::kFp16:
                impl_->graph = gpu::make_graph<__half>(*impl_->ctx, weights, options.max_batch);
                break;
            case Precision::kBf16:
                impl_->graph = gpu::make_graph<__nv_bfloat16>(*impl_->ctx, weights, options.max_batch);
                break;
        }
    }
    std::size_t free_after = 0;
    VQA_CUDA_CHECK(cudaMemGetInfo(&free_after, &total));
    impl_->weight_bytes = free_before > free_after ? free_before - free_after : 0;
    impl_->graph->set_use_graphs(options.cuda_graphs);
    impl_->graph->set_pack_sequences(options.pack_sequences);
    // One pass at the largest batch (every question about its own image) sizes the arena and the pinned buffers,
    // so that answering never allocates device memory.
    const int64_t len = impl_->config.text.tokenizer.max_length;
    const int64_t b = options.max_batch;
    std::vector<int64_t> ids(static_cast<std::size_t>(b * len), impl_->config.text.tokenizer.pad_id);
    std::vector<int64_t> lengths(static_cast<std::size_t>(b), len);
    std::vector<int64_t> image_index(static_cast<std::size_t>(b));
    for (int64_t i = 0; i < b; ++i) {
        image_index[static_cast<std::size_t>(i)] = i;
    }
    const ModelConfig& c = impl_->config;
    std::vector<float> pixels;
    std::vector<float> regions;
    std::vector<float> boxes;
    ImageBatch images;
    images.count = b;
    if (c.image.encoder == ImageEncoder::kRegions) {
        regions.assign(static_cast<std::size_t>(b * impl_->image_tokens * c.image.regions.feature_dim), 1.0f);
        boxes.assign(static_cast<std::size_t>(b * impl_->image_tokens * 5), 0.5f);
        images.regions = regions.data();
        images.boxes5 = boxes.data();
    } else {
        pixels.assign(static_cast<std::size_t>(b * 3 * int64_t{c.image.input.height} * c.image.input.width), 0.0f);
        images.pixels = pixels.data();
    }
    const TextBatch text{b, ids.data(), lengths.data(), image_index.data()};
    try {
        // Every row valid: the largest packed pass (its gathers take a little more than the padded pass), then
        // two padded ones: the first grows the arena in chunks; the second runs in the single final chunk (and
        // captures the largest bucket's CUDA graph in it).
        if (options.pack_sequences) {
            impl_->graph->forward(images, text, nullptr, gpu::PackingMode::kPacked);
        }
        impl_->graph->forward(images, text, nullptr, gpu::PackingMode::kPadded);
        impl_->graph->forward(images, text, nullptr, gpu::PackingMode::kPadded);
    } catch (const Error& e) {
        if (e.code() == ErrorCode::kOutOfMemory) {
            throw Error(ErrorCode::kOutOfMemory,
                        detail::str_cat("CUDA backend: a pass of max_batch = ", b,
                                        " questions does not fit in device memory next to the weights (", e.what(),
                                        "); load with a smaller max_batch"));
        }
        throw;
    }
}

CudaModel::~CudaModel() = default;
CudaModel::CudaModel(CudaModel&&) noexcept = default;
CudaModel& CudaModel::operator=(CudaModel&&) noexcept = default;

ModelOutput CudaModel::forward(const ImageBatch& images, const TextBatch& text, const ActivationSink* sink) const {
    gpu::check_inputs(images, text, impl_->config.text.tokenizer.max_length, impl_->vocab_rows, impl_->max_batch,
                      impl_->config.image);
    if (text.count == 0) {
        return {};
    }
    auto lock = impl_->ctx->lock();
    const gpu::DeviceScope scope(impl_->ctx->device());
    return impl_->graph->forward(images, text, sink, gpu::PackingMode::kAuto);
}

const ModelConfig& CudaModel::config() const {
    return impl_->config;
}
int64_t CudaModel::num_answers() const {
    return impl_->num_answers;
}
int64_t CudaModel::image_tokens() const {
    return impl_->image_tokens;
}
int64_t CudaModel::max_batch() const {
    return impl_->max_batch;
}
std::size_t CudaModel::weight_bytes() const {
    return impl_->weight_bytes;
}
std::size_t CudaModel::workspace_bytes() const {
    return impl_->ctx->arena().capacity();
}

}  // namespace vqa

// The model of docs/model-format.md on the GPU (engine/cuda_model.h): how its passes run. Inputs are staged through
// one pinned buffer; a pass is packed (padding removed), or padded to a bucket and replayed as a CUDA graph, or run
// eagerly. The stages of a pass are in engine/cuda_pass.cpp.
#include "engine/cuda_model.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/cuda_pass.h"
#include "kernels/bias_act.h"
#include "kernels/check.h"
#include "kernels/embedding_gather.h"
#include "kernels/fused_attention.h"
#include "kernels/rnn.h"
#include "kernels/tensor_ops.h"
#include "kernels/topk.h"
#include "kernels/trace.h"

namespace vqa {

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

// Captured packed buckets beyond this many run eagerly (a workload whose row counts keep changing); padded buckets
// (at most (ceil(log2 max_batch) + 1)² of them) are always captured.
constexpr int64_t kMaxPackedGraphs = 64;

// The status of a call that ends or instantiates a capture, checked after clearing the thread's last CUDA error:
// a failure there is this pass's, and the next pass's launch checks (cudaGetLastError) must not report it.
void check_capture_step(cudaError_t status) {
    if (status != cudaSuccess) {
        static_cast<void>(cudaGetLastError());
        VQA_CUDA_CHECK(status);
    }
}

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

// Bucket sizes: powers of two up to max_batch, which is its own last bucket.
int64_t bucket_of(int64_t n, int64_t max_batch) {
    int64_t bucket = 1;
    while (bucket < n) {
        bucket *= 2;
    }
    return std::min(bucket, max_batch);
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

}  // namespace

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
                                PassPacking* packing,
                                bool pool_weights) {
    const LayerContext lc{ctx_, spec_, sink};
    ctx_.arena().reset();
    const DeviceInputs in = stage_inputs(images, text, config_.text.tokenizer.max_length, true, packing);
    ModelOutput out;
    PoolMaps maps;
    run_device(lc, in, images.count, text.count, packing, out, pool_weights ? &maps : nullptr);
    ctx_.synchronize();
    if (config_.head.type == HeadType::kClassifier) {
        out = read_logits(text.count);
        if (sink != nullptr) {
            (*sink)("logits", {text.count, num_answers_}, out.logits.data());
        }
    }
    if (pool_weights) {
        read_pool_maps(maps, packing, text, out);
    }
    return out;
}

template <typename T>
void Graph<T>::read_pool_maps(const PoolMaps& maps,
                              const PassPacking* packing,
                              const TextBatch& text,
                              ModelOutput& out) {
    const int64_t len = config_.text.tokenizer.max_length;
    const int64_t glimpses = pool_image_.fc2.out;
    const std::vector<float> text_weights = download(ctx_, maps.text, maps.text_rows * glimpses);
    const std::vector<float> image_weights = download(ctx_, maps.image, maps.image_rows * glimpses);
    if (packing == nullptr) {
        out.pool_text = text_weights;
    } else {
        out.pool_text =
            scatter_to_padded(text_weights.data(), glimpses, packing->text, padded_positions(packing->text, len), len);
    }
    if (config_.fusion.type == FusionType::kMcan) {
        out.pool_image =
            packing == nullptr
                ? image_weights
                : scatter_to_padded(image_weights.data(), glimpses, packing->per_question,
                                    padded_positions(packing->per_question, tokens_, &packing->images), tokens_);
        return;
    }
    // Simple fusion pools each distinct image once: its map goes to every question about it.
    const std::vector<float> per_image = packing == nullptr
                                             ? image_weights
                                             : scatter_to_padded(image_weights.data(), glimpses, packing->images,
                                                                 padded_positions(packing->images, tokens_), tokens_);
    const int64_t block = tokens_ * glimpses;
    out.pool_image.resize(static_cast<std::size_t>(text.count * block));
    for (int64_t b = 0; b < text.count; ++b) {
        std::copy_n(per_image.begin() + text.image_index[b] * block, block, out.pool_image.begin() + b * block);
    }
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
    packed_graphs_ = 0;
}

template <typename T>
ModelOutput Graph<T>::run_graph(const ImageBatch& images, const TextBatch& text, bool may_pack) {
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
        // Its output is dropped: the shortest question, about a bucket-filling image when there is one, costs the
        // fewest packed rows.
        padded_lengths_.push_back(1);
        padded_index_.push_back(image_count > images.count ? images.count : 0);
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
    std::optional<PassPacking> packed;
    if (may_pack) {
        PassPacking planned = plan_packing(padded_images, padded_text, images.count);
        shape_for_graph(planned, image_count, batch);
        if (worth_packing(planned, image_count, batch)) {
            packed = std::move(planned);
        }
    }
    PassPacking* packing = packed ? &*packed : nullptr;

    drop_graphs_if_arena_moved();
    const std::array<int64_t, 5> key{batch, image_count, packed ? packed->text.total() : 0,
                                     packed ? packed->images.total() : 0, packed ? packed->per_question.total() : 0};
    auto found = graphs_.find(key);
    if (found == graphs_.end()) {
        // First pass of a bucket: eager, which plans every cuBLASLt and cuDNN call of this shape; the next pass
        // captures the then plan-free sequence of launches.
        ModelOutput out = run_eager(padded_images, padded_text, nullptr, packing);
        graphs_.emplace(key, nullptr);
        out.logits.resize(static_cast<std::size_t>(text.count * num_answers_));
        return out;
    }
    if (found->second == nullptr && packed && packed_graphs_ >= kMaxPackedGraphs) {
        // Enough packed buckets captured (row counts that keep changing): this one runs eagerly, packed as tightly
        // as the real pass goes, or as the padded bucket's graph when packing the real pass gains nothing.
        PassPacking tight = plan_packing(images, text, images.count);
        if (worth_packing(tight, images.count, text.count)) {
            return run_eager(images, text, nullptr, &tight);
        }
        return run_graph(images, text, /*may_pack=*/false);
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
            const DeviceInputs in = stage_inputs(padded_images, padded_text, len, true, packing);
            run_device(lc, in, image_count, batch, packing, unused);
        } catch (...) {
            cudaGraph_t abandoned = nullptr;
            cudaStreamEndCapture(ctx_.stream(), &abandoned);
            if (abandoned != nullptr) {
                cudaGraphDestroy(abandoned);
            }
            // The failed call's error and EndCapture's are this pass's; the next pass's launch checks must not see
            // them.
            static_cast<void>(cudaGetLastError());
            throw;
        }
        check_capture_step(cudaStreamEndCapture(ctx_.stream(), &graph));
        if (static_cast<std::size_t>(ctx_.arena().chunk_count()) != arena_chunks) {
            cudaGraphDestroy(graph);
            throw Error(ErrorCode::kInternal, "CUDA graph capture: the workspace arena grew during capture");
        }
        cudaGraphExec_t exec = nullptr;
        const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
        cudaGraphDestroy(graph);
        check_capture_step(status);
        found->second = exec;
        packed_graphs_ += packed ? 1 : 0;
    } else {
        stage_inputs(padded_images, padded_text, len, false, packing);  // the captured copy reads the pinned buffer
        if (found->second == nullptr) {  // staging dropped the graphs (it never does for a bucket already seen)
            ModelOutput out = run_eager(padded_images, padded_text, nullptr, packing);
            out.logits.resize(static_cast<std::size_t>(text.count * num_answers_));
            return out;
        }
    }
    VQA_CUDA_CHECK(cudaGraphLaunch(found->second, ctx_.stream()));
    ctx_.synchronize();
    return read_logits(text.count);
}

template <typename T>
ModelOutput Graph<T>::forward(const ImageBatch& images,
                              const TextBatch& text,
                              const ActivationSink* sink,
                              PackingMode packing_mode,
                              bool pool_weights) {
    // A sink gets every tensor in the padded layout of the golden files, so its passes are padded.
    const bool may_pack = sink == nullptr && (packing_mode == PackingMode::kPacked ||
                                              (packing_mode == PackingMode::kAuto && pack_sequences_));
    if (packing_mode == PackingMode::kPacked) {  // the load pass: the largest packed pass, eagerly
        PassPacking packing = plan_packing(images, text, images.count);
        return run_eager(images, text, nullptr, &packing, pool_weights);
    }
    // CUDA graphs replay a fixed sequence of launches: for classifier heads without a sink, a recording profile (a
    // profile wants each stage's events, which a replay does not record) or attention maps. Packed passes are
    // captured too.
    const bool recording = vqa::detail::trace_thread_state.recorder != nullptr;
    if (use_graphs_ && sink == nullptr && !recording && !pool_weights && config_.head.type == HeadType::kClassifier) {
        return run_graph(images, text, may_pack);
    }
    if (may_pack) {
        PassPacking packing = plan_packing(images, text, images.count);
        if (worth_packing(packing, images.count, text.count)) {
            return run_eager(images, text, nullptr, &packing, pool_weights);
        }
    }
    return run_eager(images, text, sink, nullptr, pool_weights);
}

template <typename T>
std::unique_ptr<GraphBase> make_graph(CudaContext& ctx, const cpu_layers::ModelWeights& w, int64_t max_batch) {
    return std::make_unique<Graph<T>>(ctx, w, max_batch);
}

// The class is instantiated in cuda_pass.cpp, with the members defined there; the rest of its virtual interface
// is defined here.
#define VQA_INSTANTIATE_GRAPH(T)                                                                                    \
    template ModelOutput Graph<T>::forward(const ImageBatch&, const TextBatch&, const ActivationSink*, PackingMode, \
                                           bool);                                                                   \
    template std::unique_ptr<GraphBase> make_graph<T>(CudaContext&, const cpu_layers::ModelWeights&, int64_t);

VQA_INSTANTIATE_GRAPH(float)
VQA_INSTANTIATE_GRAPH(__half)
VQA_INSTANTIATE_GRAPH(__nv_bfloat16)

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
        // Every row valid: the largest packed pass (its gathers take a little more than the padded pass) and the
        // largest padded one, both with attention maps (two more buffers), eagerly; they grow the arena in chunks.
        // Then two padded passes: the first runs in the single chunk reset() makes of them, the second captures the
        // largest bucket's CUDA graph in it.
        if (options.pack_sequences) {
            impl_->graph->forward(images, text, nullptr, gpu::PackingMode::kPacked, /*pool_weights=*/true);
        }
        impl_->graph->forward(images, text, nullptr, gpu::PackingMode::kPadded, /*pool_weights=*/true);
        impl_->graph->forward(images, text, nullptr, gpu::PackingMode::kPadded, false);
        impl_->graph->forward(images, text, nullptr, gpu::PackingMode::kPadded, false);
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

ModelOutput CudaModel::forward(const ImageBatch& images,
                               const TextBatch& text,
                               const ActivationSink* sink,
                               bool pool_weights) const {
    gpu::check_inputs(images, text, impl_->config.text.tokenizer.max_length, impl_->vocab_rows, impl_->max_batch,
                      impl_->config.image);
    if (text.count == 0) {
        return {};
    }
    auto lock = impl_->ctx->lock();
    const gpu::DeviceScope scope(impl_->ctx->device());
    return impl_->graph->forward(images, text, sink, gpu::PackingMode::kAuto, pool_weights);
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

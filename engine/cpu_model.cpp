// The model of docs/model-format.md on the CPU: image trunk + adapter (§4), question encoder (§5), fusion stack
// (§6), pooling and fused vector (§7), answer head (§8). Layers are in cpu_layers.cpp, trunks in
// cpu_image_encoder.cpp.
#include "engine/cpu_model.h"

#include <algorithm>
#include <optional>
#include <string>

#include <cblas.h>
#include <omp.h>

#include "engine/cpu_image_encoder.h"
#include "engine/cpu_layers.h"
#include "engine/model_weights.h"
#include "kernels/check.h"
#include "kernels/cpu/embedding_gather.h"
#include "kernels/cpu/rnn.h"
#include "kernels/cpu/topk.h"
#include "kernels/trace.h"

namespace vqa {
namespace cpu_layers {
namespace {

// Sets the OpenMP thread count of the calling thread for one forward pass and restores it after (the setting is
// per thread, so concurrent passes do not interfere).
class OmpThreadsScope {
public:
    explicit OmpThreadsScope(int threads) : active_(threads > 0), previous_(omp_get_max_threads()) {
        if (active_) {
            omp_set_num_threads(threads);
        }
    }
    ~OmpThreadsScope() {
        if (active_) {
            omp_set_num_threads(previous_);
        }
    }
    OmpThreadsScope(const OmpThreadsScope&) = delete;
    OmpThreadsScope& operator=(const OmpThreadsScope&) = delete;

private:
    bool active_;
    int previous_;
};

// dst[b] = src[index[b]] for blocks of `block` elements.
template <typename T, typename Index>
void gather_blocks(const T* src, int64_t block, const Index* index, int64_t count, T* dst) {
    for (int64_t b = 0; b < count; ++b) {
        std::copy_n(src + int64_t{index[b]} * block, block, dst + b * block);
    }
}

// The rows `source` of src [·, width], as [source.size(), width].
std::vector<float> gather_rows(const std::vector<float>& src, int64_t width, const std::vector<int32_t>& source) {
    std::vector<float> dst(source.size() * static_cast<std::size_t>(width));
    gather_blocks(src.data(), width, source.data(), static_cast<int64_t>(source.size()), dst.data());
    return dst;
}

// The golden files' mask convention: 1.0 where masked.
std::vector<float> masked_as_float(const std::vector<uint8_t>& valid) {
    std::vector<float> out(valid.size());
    std::transform(valid.begin(), valid.end(), out.begin(), [](uint8_t v) { return v != 0 ? 0.0f : 1.0f; });
    return out;
}

int32_t first_argmax(const float* row, int64_t n) {
    return static_cast<int32_t>(std::max_element(row, row + n) - row);  // first maximum: ties go to the lower id
}

}  // namespace

ModelWeights::ModelWeights(const ModelDir& dir, const WeightReader& reader)
    : config(dir.config),
      spec(AttentionSpec::from_config(dir.config)),
      num_answers(static_cast<int64_t>(dir.answers.size())),
      trunk(dir.config, reader) {
    const ModelConfig& c = config;
    const int64_t d = c.fusion.hidden;
    const int64_t e = c.text.embed_dim;
    adapter = Linear::load(reader, "image.adapter", d, trunk.feature_dim());

    const std::string embedding_name = "text.embedding.weight";
    VQA_CHECK(dir.weights.contains(embedding_name), kModelFormat, "missing tensor ", embedding_name);
    vocab_rows = dir.weights.info(embedding_name).shape.empty() ? 0 : dir.weights.info(embedding_name).shape[0];
    embedding = reader.take(embedding_name, {vocab_rows, e});
    if (c.text.encoder == TextEncoder::kLstm) {
        text_lstm = RecurrentWeights::load(reader, "text.lstm", 4, d, e);
    } else {
        VQA_CHECK(e == d, kModelFormat, "text.embed_dim (", e, ") must equal fusion.hidden (", d,
                  ") for the transformer text encoder");
        position = reader.take("text.position.weight", {c.text.tokenizer.max_length, d});
        for (int i = 0; i < c.text.layers; ++i) {
            text_layers.push_back(SelfAttentionLayer::load(reader, "text.layers." + std::to_string(i), c));
        }
    }

    for (int i = 0; i < c.fusion.layers; ++i) {
        const std::string text_name = "fusion.text." + std::to_string(i);
        if (c.fusion.type == FusionType::kMcan) {
            fusion_text.push_back(SelfAttentionLayer::load(reader, text_name, c));
            fusion_image.push_back(GuidedAttentionLayer::load(reader, "fusion.image." + std::to_string(i), c));
        } else {
            fusion_cross.push_back(CrossAttentionLayer::load(reader, text_name, c));
        }
    }

    pool_text = AttentionPool::load(reader, "pool.text", c);
    pool_image = AttentionPool::load(reader, "pool.image", c);
    head_norm = LayerNorm::load(reader, "head.norm", c.pool.out_dim, c.layer_norm);

    const int64_t a = num_answers;
    if (c.head.type == HeadType::kClassifier) {
        classifier = Linear::load(reader, "head.classifier", a, c.pool.out_dim);
    } else {
        const int64_t hidden = c.head.hidden;
        head_init = Linear::load(reader, "head.init", hidden, c.pool.out_dim);
        answer_embedding = reader.take("head.embedding.weight", {a, c.head.embed_dim});
        cell = RecurrentWeights::load(reader, "head.cell", c.head.cell == RecurrentCell::kGru ? 3 : 4, hidden,
                                      c.head.embed_dim);
        head_out = Linear::load(reader, "head.out", a, hidden);
    }
}

namespace {

// The state of one forward pass: the model holds none, so concurrent passes share only the read-only weights.
struct Pass {
    const ModelWeights& w;
    const TextBatch& text;
    const ActivationSink* sink;
    int64_t batch = 0;          // B
    int64_t len = 0;            // L
    int64_t dim = 0;            // d
    int64_t images = 0;         // Bi
    int64_t tokens = 0;         // Ni
    bool packed = false;        // padding removed before the fusion stack (never with a sink: its tensors are padded)
    bool pool_weights = false;  // keep the poolings' weights (ModelOutput::pool_text, pool_image)
    LayerScratch scratch;
    std::vector<float> rnn_scratch;
    std::vector<float> pool_text;   // [B, L, G] when pool_weights
    std::vector<float> pool_image;  // [B, Ni, G] when pool_weights
};

// The weights the last attention_pool left in scratch.probs ([xs.rows, G]) in the padded layout [S, len, G]:
// as they are when padded; packed, each row at its padded position (`position`, engine/packing.h).
std::vector<float> padded_pool_weights(const Pass& pass,
                                       const SequenceRows& xs,
                                       const PackedSequences& runs,
                                       const std::vector<int32_t>& position,
                                       int64_t len,
                                       int64_t glimpses) {
    const float* weights = pass.scratch.probs.data();
    if (!xs.packed()) {
        return std::vector<float>(weights, weights + xs.batch * len * glimpses);
    }
    return scatter_to_padded(weights, glimpses, runs, position, len);
}

// §4: every distinct image once. Padded: tokens [Bi, Ni, d] and their mask [Bi, Ni] (1 = valid); packed: the
// valid tokens of each image [Ti, d], in runs (the adapter runs on those rows only).
struct EncodedImages {
    std::vector<float> tokens;
    std::vector<uint8_t> valid;
    PackedSequences runs;  // packed only
    SequenceRows rows;     // the layout of `tokens`
};

EncodedImages encode_images(Pass& pass, const ImageBatch& batch) {
    const TraceRange range("image_encoder");
    const ModelWeights& w = pass.w;
    EncodedImages images;
    std::vector<float> trunk;  // [Bi, Ni, C_img]
    w.trunk.encode(batch, trunk, images.valid);
    const int64_t channels = w.trunk.feature_dim();
    emit(pass.sink, "image_trunk", {pass.images, pass.tokens, channels}, trunk.data());
    const TraceRange adapter_range("image.adapter");
    if (pass.packed) {
        images.runs = pack_valid_rows(images.valid.data(), pass.images, pass.tokens,
                                      w.spec.masked_row == cpu::MaskedRow::kUniform);
        if (images.runs.total() != pass.images * pass.tokens) {  // else every row is kept, in order
            trunk = gather_rows(trunk, channels, images.runs.source);
        }
        images.rows = images.runs.view();
    } else {
        images.rows = SequenceRows::padded(pass.images, pass.tokens, images.valid.data());
    }
    images.tokens.resize(static_cast<std::size_t>(images.rows.rows * pass.dim));
    w.adapter.forward(trunk.data(), images.rows.rows, images.tokens.data());
    emit(pass.sink, "image_tokens", {pass.images, pass.tokens, pass.dim}, images.tokens.data());
    if (pass.sink != nullptr) {
        emit(pass.sink, "image_mask", {pass.images, pass.tokens}, masked_as_float(images.valid).data());
    }
    return images;
}

// §5: the question tokens, padded [B, L, d] or packed [Tq, d] (the transformer encoder's layers run packed).
struct EncodedText {
    std::vector<float> tokens;
    std::vector<uint8_t> valid;  // [B, L], 1 = valid
    PackedSequences runs;        // packed only
    SequenceRows rows;           // the layout of `tokens`
};

EncodedText encode_text(Pass& pass) {
    const TraceRange range("text_encoder");
    std::optional<TraceRange> stage(std::in_place, "text.embedding");  // until reset()
    const ModelWeights& w = pass.w;
    EncodedText text;
    text.valid.assign(static_cast<std::size_t>(pass.batch * pass.len), 0);
    for (int64_t b = 0; b < pass.batch; ++b) {
        std::fill_n(text.valid.begin() + b * pass.len, pass.text.lengths[b], uint8_t{1});
    }
    text.rows = SequenceRows::padded(pass.batch, pass.len, text.valid.data());
    if (pass.packed) {
        text.runs = pack_prefixes(pass.text.lengths, pass.batch, pass.len);
    }
    const int64_t rows = pass.batch * pass.len;
    const int64_t e = w.config.text.embed_dim;
    std::vector<float> embedded(static_cast<std::size_t>(rows * e));  // [B, L, E]
    cpu::embedding_gather(pass.text.ids, rows, w.embedding.data(), w.vocab_rows, e, embedded.data());
    emit(pass.sink, "text_embedded", {pass.batch, pass.len, e}, embedded.data());
    std::vector<float>& t = text.tokens;
    t.resize(static_cast<std::size_t>(rows * pass.dim));
    stage.reset();
    if (w.config.text.encoder == TextEncoder::kLstm) {
        const TraceRange lstm_range("text.lstm");
        float* scratch = grow(pass.rnn_scratch, cpu::lstm_sequence_scratch_floats(pass.batch, pass.len, pass.dim));
        cpu::lstm_sequence(w.text_lstm.view(), embedded.data(), t.data(), pass.batch, pass.len, e, pass.dim, scratch);
        if (pass.packed) {  // the LSTM is causal: a valid position's output never depends on the padding after it
            t = gather_rows(t, pass.dim, text.runs.source);
            text.rows = text.runs.view();
        }
    } else {
        // x = embedding + position (E = d)
        const int64_t per_question = pass.len * pass.dim;
        for (int64_t i = 0; i < rows * pass.dim; ++i) {
            t[static_cast<std::size_t>(i)] =
                embedded[static_cast<std::size_t>(i)] + w.position[static_cast<std::size_t>(i % per_question)];
        }
        if (pass.packed) {
            t = gather_rows(t, pass.dim, text.runs.source);
            text.rows = text.runs.view();
        }
        for (std::size_t i = 0; i < w.text_layers.size(); ++i) {
            const TraceRange layer_range("text.layers." + std::to_string(i));
            self_attention_layer(w.text_layers[i], w.spec, t.data(), text.rows, pass.scratch, pass.sink,
                                 "text.layers." + std::to_string(i));
        }
    }
    if (pass.sink != nullptr) {
        emit(pass.sink, "text_mask", {pass.batch, pass.len}, masked_as_float(text.valid).data());
    }
    emit(pass.sink, "text_tokens", {pass.batch, pass.len, pass.dim}, t.data());
    return text;
}

// After the text pooling: its weights in the padded layout, when asked for.
void keep_text_pool_weights(Pass& pass, const EncodedText& text) {
    if (!pass.pool_weights) {
        return;
    }
    const std::vector<int32_t> position = pass.packed ? padded_positions(text.runs, pass.len) : std::vector<int32_t>{};
    pass.pool_text = padded_pool_weights(pass, text.rows, text.runs, position, pass.len, pass.w.pool_text.fc2.out);
}

// §6.4 mcan and §7: text SA_i, then the image branch per question (guided attention depends on the question),
// then both poolings. Writes pooled_text and pooled_image [B, out_dim].
void fuse_mcan(Pass& pass, const EncodedImages& images, EncodedText& text, float* pooled_text, float* pooled_image) {
    const ModelWeights& w = pass.w;
    std::vector<float>& t = text.tokens;
    for (std::size_t i = 0; i < w.fusion_text.size(); ++i) {
        const std::string name = "fusion.text." + std::to_string(i);
        const TraceRange layer_range(name);
        self_attention_layer(w.fusion_text[i], w.spec, t.data(), text.rows, pass.scratch, pass.sink, name);
        emit(pass.sink, name, {pass.batch, pass.len, pass.dim}, t.data());
    }
    // Every question gets its own copy of its image's tokens: [B, Ni, d] padded, or its image's run packed.
    std::vector<float> v;
    std::vector<uint8_t> v_valid;
    PackedSequences v_runs;
    SequenceRows vs;
    if (pass.packed) {
        v_runs = repeat_runs(images.runs, pass.text.image_index, pass.batch);
        v = gather_rows(images.tokens, pass.dim, v_runs.source);
        vs = v_runs.view();
    } else {
        v.resize(static_cast<std::size_t>(pass.batch * pass.tokens * pass.dim));
        v_valid.resize(static_cast<std::size_t>(pass.batch * pass.tokens));
        gather_blocks(images.tokens.data(), pass.tokens * pass.dim, pass.text.image_index, pass.batch, v.data());
        gather_blocks(images.valid.data(), pass.tokens, pass.text.image_index, pass.batch, v_valid.data());
        vs = SequenceRows::padded(pass.batch, pass.tokens, v_valid.data());
    }
    for (std::size_t i = 0; i < w.fusion_image.size(); ++i) {
        const std::string name = "fusion.image." + std::to_string(i);
        const TraceRange layer_range(name);
        guided_attention_layer(w.fusion_image[i], w.spec, v.data(), vs, t.data(), text.rows, pass.scratch, pass.sink,
                               name);
        emit(pass.sink, name, {pass.batch, pass.tokens, pass.dim}, v.data());
    }
    const int64_t glimpses = w.pool_image.fc2.out;
    attention_pool(w.pool_image, w.spec.masked_row, v.data(), vs, pooled_image, pass.scratch, pass.sink, "pool.image");
    if (pass.pool_weights) {
        const std::vector<int32_t> position =
            pass.packed ? padded_positions(v_runs, pass.tokens, &images.runs) : std::vector<int32_t>{};
        pass.pool_image = padded_pool_weights(pass, vs, v_runs, position, pass.tokens, glimpses);
    }
    attention_pool(w.pool_text, w.spec.masked_row, t.data(), text.rows, pooled_text, pass.scratch, pass.sink,
                   "pool.text");
    keep_text_pool_weights(pass, text);
}

// §6.4 simple and §7: text GA_i over the image tokens, which are the same for every question about an image, so
// each layer's keys/values and the image pooling are computed once per distinct image and shared per question
// (gathered when padded; read in place through each question's key run when packed).
void fuse_simple(Pass& pass, const EncodedImages& images, EncodedText& text, float* pooled_text, float* pooled_image) {
    const ModelWeights& w = pass.w;
    const int64_t* index = pass.text.image_index;
    std::vector<float>& t = text.tokens;
    const int64_t kv_width = 2 * pass.dim;
    std::vector<float> kv_images(static_cast<std::size_t>(images.rows.rows * kv_width));  // [Bi·Ni or Ti, 2d]
    std::vector<float> kv;                                                                // padded: [B, Ni, 2d]
    std::vector<uint8_t> v_valid;                                                         // padded: [B, Ni]
    SharedRuns shared;
    SequenceRows ks;
    if (pass.packed) {
        shared = share_runs(images.runs, index, pass.batch);
        ks = shared.view(images.runs);
    } else {
        kv.resize(static_cast<std::size_t>(pass.batch * pass.tokens * kv_width));
        v_valid.resize(static_cast<std::size_t>(pass.batch * pass.tokens));
        gather_blocks(images.valid.data(), pass.tokens, index, pass.batch, v_valid.data());
        ks = SequenceRows::padded(pass.batch, pass.tokens, v_valid.data());
    }
    for (std::size_t i = 0; i < w.fusion_cross.size(); ++i) {
        const std::string name = "fusion.text." + std::to_string(i);
        const TraceRange layer_range(name);
        w.fusion_cross[i].cross_att.kv.forward(images.tokens.data(), images.rows.rows, kv_images.data());
        if (!pass.packed) {
            gather_blocks(kv_images.data(), pass.tokens * kv_width, index, pass.batch, kv.data());
        }
        cross_attention_layer(w.fusion_cross[i], w.spec, t.data(), text.rows,
                              pass.packed ? kv_images.data() : kv.data(), ks, pass.scratch, pass.sink, name);
        emit(pass.sink, name, {pass.batch, pass.len, pass.dim}, t.data());
    }

    const int64_t out_dim = w.pool_image.merge.out;
    const int64_t glimpses = w.pool_image.fc2.out;
    std::vector<float> pooled_images(static_cast<std::size_t>(pass.images * out_dim));  // [Bi, out_dim]
    attention_pool(w.pool_image, w.spec.masked_row, images.tokens.data(), images.rows, pooled_images.data(),
                   pass.scratch, nullptr, "pool.image");
    gather_blocks(pooled_images.data(), out_dim, index, pass.batch, pooled_image);
    if (pass.sink != nullptr || pass.pool_weights) {
        // The pooling weights are left in scratch.probs, per distinct image; reported per question.
        const std::vector<int32_t> position =
            pass.packed ? padded_positions(images.runs, pass.tokens) : std::vector<int32_t>{};
        const std::vector<float> per_image =
            padded_pool_weights(pass, images.rows, images.runs, position, pass.tokens, glimpses);  // [Bi, Ni, G]
        std::vector<float> weights(static_cast<std::size_t>(pass.batch * pass.tokens * glimpses));
        gather_blocks(per_image.data(), pass.tokens * glimpses, index, pass.batch, weights.data());
        emit(pass.sink, "pool.image.weights", {pass.batch, pass.tokens, glimpses}, weights.data());
        if (pass.pool_weights) {
            pass.pool_image = std::move(weights);
        }
    }
    attention_pool(w.pool_text, w.spec.masked_row, t.data(), text.rows, pooled_text, pass.scratch, pass.sink,
                   "pool.text");
    keep_text_pool_weights(pass, text);
}

// §8 generate: greedy decoding. Every question steps until its eos (or max_length); finished rows keep stepping
// with the batch but record nothing, and the loop ends once all have finished.
void decode_greedy(Pass& pass, const std::vector<float>& fused, ModelOutput& out) {
    const ModelWeights& w = pass.w;
    const HeadConfig& head = w.config.head;
    const int64_t batch = pass.batch;
    const int64_t answers = w.num_answers;
    const int64_t hidden = head.hidden;
    const int64_t steps = head.max_length;
    std::vector<float> h(static_cast<std::size_t>(batch * hidden));
    std::vector<float> cell_state(static_cast<std::size_t>(batch * hidden), 0.0f);
    w.head_init.forward(fused.data(), batch, h.data(), cpu::Activation::kTanh);  // h0 = tanh(init(f)), c0 = 0
    std::vector<int32_t> token(static_cast<std::size_t>(batch), head.bos_id);
    std::vector<float> input(static_cast<std::size_t>(batch * head.embed_dim));
    std::vector<float> logits(static_cast<std::size_t>(batch * answers));
    std::vector<float> probs(static_cast<std::size_t>(batch * answers));
    std::vector<float> step_logits(pass.sink != nullptr ? static_cast<std::size_t>(batch * steps * answers) : 0, 0.0f);
    std::vector<char> done(static_cast<std::size_t>(batch), 0);
    out.tokens.assign(static_cast<std::size_t>(batch), {});
    out.sequence_scores.assign(static_cast<std::size_t>(batch), 1.0f);
    float* scratch = grow(pass.rnn_scratch, batch * 6 * hidden);  // gates: LSTM 4·Hd, GRU 6·Hd per row
    for (int64_t step = 0; step < steps; ++step) {
        cpu::embedding_gather(token.data(), batch, w.answer_embedding.data(), answers, head.embed_dim, input.data());
        if (head.cell == RecurrentCell::kLstm) {
            cpu::lstm_cell_step(w.cell.view(), input.data(), h.data(), cell_state.data(), h.data(), cell_state.data(),
                                batch, head.embed_dim, hidden, scratch);
        } else {
            cpu::gru_cell_step(w.cell.view(), input.data(), h.data(), h.data(), batch, head.embed_dim, hidden, scratch);
        }
        w.head_out.forward(h.data(), batch, logits.data());
        cpu::softmax_rows(logits.data(), probs.data(), batch, answers);
        bool all_done = true;
        for (int64_t b = 0; b < batch; ++b) {
            const auto row = static_cast<std::size_t>(b);
            const float* row_logits = logits.data() + b * answers;
            const int32_t next = first_argmax(row_logits, answers);
            if (!done[row]) {
                out.sequence_scores[row] *= probs[static_cast<std::size_t>(b * answers + next)];
                out.tokens[row].push_back(next);
                if (pass.sink != nullptr) {
                    std::copy_n(row_logits, answers, step_logits.data() + (b * steps + step) * answers);
                }
                done[row] = next == head.eos_id ? 1 : 0;
            }
            token[row] = next;
            all_done = all_done && done[row];
        }
        if (all_done) {
            break;
        }
    }
    emit(pass.sink, "scores", {batch}, out.sequence_scores.data());
    if (pass.sink != nullptr) {
        emit(pass.sink, "step_logits", {batch, steps, answers}, step_logits.data());
    }
}

void check_batches(const ImageBatch& images, const TextBatch& text, int64_t max_length) {
    VQA_CHECK(text.ids != nullptr && text.lengths != nullptr && text.image_index != nullptr, kInvalidArgument,
              "CpuModel::forward: TextBatch ids, lengths and image_index must not be null");
    VQA_CHECK(images.count >= 1, kInvalidArgument, "CpuModel::forward: ImageBatch::count must be >= 1, got ",
              images.count);
    for (int64_t b = 0; b < text.count; ++b) {
        VQA_CHECK(text.lengths[b] >= 1 && text.lengths[b] <= max_length, kInvalidArgument,
                  "CpuModel::forward: question ", b, " has length ", text.lengths[b], ", expected 1..", max_length);
        VQA_CHECK(text.image_index[b] >= 0 && text.image_index[b] < images.count, kInvalidArgument,
                  "CpuModel::forward: question ", b, " has image_index ", text.image_index[b], ", expected 0..",
                  images.count - 1);
    }
}

}  // namespace
}  // namespace cpu_layers

CpuModel::CpuModel(const ModelDir& dir, int threads, bool pack_sequences) : threads_(threads), pack_(pack_sequences) {
    VQA_CHECK(threads >= 0, kInvalidArgument, "CpuModel: threads must be >= 0 (0 = library default), got ", threads);
    VQA_CHECK(!dir.answers.empty(), kModelFormat, "answers.json: expected at least one answer");
    const cpu_layers::WeightReader reader(dir.weights);
    weights_ = std::make_unique<const cpu_layers::ModelWeights>(dir, reader);
    if (threads > 0) {
        openblas_set_num_threads(threads);  // process-wide: OpenBLAS has one thread pool
    }
}

CpuModel::~CpuModel() = default;
CpuModel::CpuModel(CpuModel&&) noexcept = default;
CpuModel& CpuModel::operator=(CpuModel&&) noexcept = default;

const ModelConfig& CpuModel::config() const {
    return weights_->config;
}
int64_t CpuModel::num_answers() const {
    return weights_->num_answers;
}
int64_t CpuModel::image_tokens() const {
    return weights_->trunk.tokens();
}

ModelOutput CpuModel::forward(const ImageBatch& images,
                              const TextBatch& text,
                              const ActivationSink* sink,
                              bool pool_weights) const {
    using namespace cpu_layers;
    const TraceRange range("forward");
    const ModelWeights& w = *weights_;
    const OmpThreadsScope omp_threads(threads_);
    VQA_CHECK(text.count >= 0, kInvalidArgument, "CpuModel::forward: TextBatch::count must be >= 0, got ", text.count);
    ModelOutput out;
    if (text.count == 0) {
        return out;
    }
    const int64_t len = w.config.text.tokenizer.max_length;
    check_batches(images, text, len);
    Pass pass{w,
              text,
              sink,
              text.count,
              len,
              w.spec.dim,
              images.count,
              w.trunk.tokens(),
              /*packed=*/pack_ && sink == nullptr,
              pool_weights,
              {},
              {},
              {},
              {}};
    // The scratch of the calling thread's previous pass: its buffers keep their size, so a pass does not fault in
    // and zero fresh pages for them each time (up to 8% of an MCAN-small-like pass).
    thread_local LayerScratch kept_scratch;
    pass.scratch = std::move(kept_scratch);
    struct KeepScratch {
        LayerScratch& from;
        ~KeepScratch() { kept_scratch = std::move(from); }
    } keep{pass.scratch};

    const EncodedImages encoded = encode_images(pass, images);
    EncodedText encoded_text = encode_text(pass);

    const int64_t out_dim = w.config.pool.out_dim;
    std::vector<float> pooled_text(static_cast<std::size_t>(pass.batch * out_dim));
    std::vector<float> pooled_image(static_cast<std::size_t>(pass.batch * out_dim));
    if (w.config.fusion.type == FusionType::kMcan) {
        fuse_mcan(pass, encoded, encoded_text, pooled_text.data(), pooled_image.data());
    } else {
        fuse_simple(pass, encoded, encoded_text, pooled_text.data(), pooled_image.data());
    }
    out.pool_text = std::move(pass.pool_text);
    out.pool_image = std::move(pass.pool_image);
    emit(sink, "pooled_text", {pass.batch, out_dim}, pooled_text.data());
    emit(sink, "pooled_image", {pass.batch, out_dim}, pooled_image.data());
    std::vector<float> fused(static_cast<std::size_t>(pass.batch * out_dim));  // f = LN(pooled_text + pooled_image)
    std::optional<TraceRange> stage(std::in_place, "head.norm");  // then the head: emplace() ends one, begins the next
    w.head_norm.forward(pooled_text.data(), pooled_image.data(), fused.data(), pass.batch);
    emit(sink, "fused", {pass.batch, out_dim}, fused.data());

    if (w.config.head.type == HeadType::kClassifier) {
        stage.emplace("head.classifier");
        const int64_t answers = w.num_answers;
        out.logits.resize(static_cast<std::size_t>(pass.batch * answers));
        w.classifier.forward(fused.data(), pass.batch, out.logits.data());
        emit(sink, "logits", {pass.batch, answers}, out.logits.data());
    } else {
        stage.emplace("head.generate");
        decode_greedy(pass, fused, out);
    }
    return out;
}

}  // namespace vqa

// vqa::Engine: the public API over the model directory loader, the tokenizer, image preparation and the CPU
// model graph.
#include "vqa/engine.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <new>
#include <optional>

#include "engine/cpu_model.h"
#include "engine/device.h"
#include "engine/image_preparer.h"
#include "engine/inputs.h"
#include "engine/json_util.h"
#include "engine/model_dir.h"
#include "engine/model_runner.h"
#include "engine/tokenizer.h"
#include "kernels/cpu/topk.h"
#include "kernels/trace.h"

namespace vqa {

ImageInput ImageInput::file(std::string path) {
    ImageInput in;
    in.kind_ = Kind::kFile;
    in.name_ = std::move(path);
    return in;
}

ImageInput ImageInput::encoded(std::vector<uint8_t> bytes, std::string name) {
    ImageInput in;
    in.kind_ = Kind::kEncoded;
    in.bytes_ = std::move(bytes);
    in.name_ = std::move(name);
    return in;
}

ImageInput ImageInput::pixels(int height, int width, std::vector<uint8_t> rgb, std::string name) {
    ImageInput in;
    in.kind_ = Kind::kPixels;
    in.height_ = height;
    in.width_ = width;
    in.bytes_ = std::move(rgb);
    in.name_ = std::move(name);
    return in;
}

ImageInput ImageInput::regions(RegionFeatures features, std::string name) {
    ImageInput in;
    in.kind_ = Kind::kRegions;
    in.regions_ = std::move(features);
    in.name_ = std::move(name);
    return in;
}

ImageInput ImageInput::region_file(std::string path) {
    ImageInput in;
    in.kind_ = Kind::kRegionFile;
    in.name_ = std::move(path);
    return in;
}

namespace {

const char* image_encoder_name(ImageEncoder e) {
    switch (e) {
        case ImageEncoder::kCnn:
            return "cnn";
        case ImageEncoder::kResnet:
            return "resnet";
        case ImageEncoder::kRegions:
            return "regions";
    }
    return "?";
}

ModelInfo make_info(const ModelDir& dir, Device device) {
    const ModelConfig& c = dir.config;
    ModelInfo info;
    info.name = c.name;
    info.path = dir.path;
    info.image_encoder = image_encoder_name(c.image.encoder);
    info.text_encoder = c.text.encoder == TextEncoder::kLstm ? "lstm" : "transformer";
    info.fusion = c.fusion.type == FusionType::kMcan ? "mcan" : "simple";
    info.head = c.head.type == HeadType::kClassifier ? "classifier" : "generate";
    info.hidden = c.fusion.hidden;
    info.heads = c.fusion.heads;
    info.layers = c.fusion.layers;
    info.num_answers = static_cast<int64_t>(dir.answers.size());
    info.vocab_size = dir.weights.info("text.embedding.weight").shape[0];
    for (const std::string& name : dir.weights.names()) {
        info.parameters += dir.weights.info(name).numel;
    }
    if (c.image.encoder != ImageEncoder::kRegions) {
        info.input_height = c.image.input.height;
        info.input_width = c.image.input.width;
    }
    info.device = device;
    return info;
}

// One question on its way through answer(): its tokens, or the reason it cannot be answered.
struct PendingQuery {
    std::vector<int64_t> ids;
    int64_t length = 0;
    bool ok = false;
};

void fail(Result& result, ErrorCode code, std::string message) {
    result.ok = false;
    result.error_code = code;
    result.error = std::move(message);
}

// The root range of a public call ("load", "answer"). With a Profile, it also records every range the call opens
// on this thread, and finish() appends them to the profile; a call that throws appends nothing.
class ProfiledCall {
public:
    ProfiledCall(const char* name, Profile* profile) : profile_(profile) {
        if (profile_ != nullptr) {
            recorder_.emplace();
            recording_.emplace(*recorder_);
        }
        root_.emplace(name);
    }

    // Ends the call's range; throws vqa::Error if device times cannot be read (TraceRecorder::finish).
    void finish() {
        root_.reset();
        if (profile_ == nullptr) {
            return;
        }
        recording_.reset();
        const std::vector<TraceRecord> records = recorder_->finish();
        profile_->ranges.reserve(profile_->ranges.size() + records.size());
        for (const TraceRecord& r : records) {
            ProfileRange range;
            range.name = r.name;
            range.depth = r.depth;
            range.start_us = r.start_us;
            range.duration_us = std::max(0.0, r.end_us - r.start_us);
            range.device = r.device;
            range.thread = r.thread;
            profile_->ranges.push_back(std::move(range));
        }
    }

private:
    Profile* profile_;
    std::optional<TraceRecorder> recorder_;
    std::optional<TraceRecordingScope> recording_;
    std::optional<TraceRange> root_;  // destroyed first: the root range ends before recording stops
};

// Everything an Engine holds; immutable after load, so answer() may run on several threads at once.
struct EngineState {
    ModelDir dir;
    Tokenizer tokenizer;
    ModelRunner model;
    EngineOptions options;
    ModelInfo info;

    EngineState(ModelDir&& loaded, const EngineOptions& opts, Device device)
        : dir(std::move(loaded)),
          tokenizer(dir.config.text.tokenizer, dir.vocab),
          model(dir, opts, device),
          options(opts),
          info(make_info(dir, device)) {}
};

void run_chunk(const EngineState& impl,
               const std::vector<const PreparedImage*>& prepared,
               const std::vector<Query>& queries,
               const std::vector<PendingQuery>& pending,
               const std::vector<std::size_t>& chunk,
               const AnswerOptions& options,
               std::vector<Result>& results);

}  // namespace

struct Engine::Impl : EngineState {
    using EngineState::EngineState;
};

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::Engine(Engine&&) noexcept = default;
Engine& Engine::operator=(Engine&&) noexcept = default;
Engine::~Engine() = default;

Engine Engine::load(const std::string& model_dir, const EngineOptions& options) try {
    ProfiledCall call("load", options.profile);
    VQA_CHECK(options.max_batch >= 1, kInvalidArgument, "EngineOptions::max_batch: expected >= 1, got ",
              options.max_batch);
    VQA_CHECK(options.threads >= 0, kInvalidArgument, "EngineOptions::threads: expected >= 0, got ", options.threads);
    VQA_CHECK(options.decode_threads >= -1, kInvalidArgument,
              "EngineOptions::decode_threads: expected -1 (automatic) or >= 0, got ", options.decode_threads);
    VQA_CHECK(options.max_image_pixels >= 1, kInvalidArgument, "EngineOptions::max_image_pixels: expected >= 1, got ",
              options.max_image_pixels);
    const Device device = select_backend(options.device, options.precision);
    std::optional<TraceRange> stage(std::in_place, "read_model_dir");  // each emplace() ends a stage, begins the next
    ModelDir dir = load_model_dir(model_dir);
    stage.emplace("prepare_weights");
    auto impl = std::make_unique<Impl>(std::move(dir), options, device);
    stage.reset();
    call.finish();
    return Engine(std::move(impl));
} catch (const std::bad_alloc&) {
    throw Error(ErrorCode::kOutOfMemory, model_dir + ": out of memory while loading the model");
}

const ModelInfo& Engine::info() const {
    return impl_->info;
}

const std::vector<std::string>& Engine::answers() const {
    return impl_->dir.answers;
}

std::vector<Result> Engine::answer(const ImageInput& image,
                                   const std::vector<std::string>& questions,
                                   const AnswerOptions& options) const try {
    std::vector<Query> queries;
    queries.reserve(questions.size());
    for (const std::string& q : questions) {
        queries.push_back({0, q});
    }
    return answer(std::vector<ImageInput>{image}, queries, options);
} catch (const std::bad_alloc&) {
    throw Error(ErrorCode::kOutOfMemory,
                "out of memory answering " + std::to_string(questions.size()) + " questions about " + image.name());
}

// A std::bad_alloc that no question or image could be blamed for fails the whole call as kOutOfMemory.
std::vector<Result> Engine::answer(const std::vector<ImageInput>& images,
                                   const std::vector<Query>& queries,
                                   const AnswerOptions& options) const try {
    ProfiledCall call("answer", options.profile);
    VQA_CHECK(options.top_k >= 1, kInvalidArgument, "AnswerOptions::top_k: expected >= 1, got ", options.top_k);
    for (std::size_t i = 0; i < queries.size(); ++i) {
        VQA_CHECK(queries[i].image >= 0 && queries[i].image < static_cast<int64_t>(images.size()), kInvalidArgument,
                  "query ", i, ": image index ", queries[i].image, " is outside the ", images.size(),
                  " images of this call");
    }
    std::vector<Result> results(queries.size());
    const ModelConfig& config = impl_->dir.config;

    // Questions first: cheap, and an image nobody can ask about need not be decoded.
    std::vector<PendingQuery> pending(queries.size());
    {
        const TraceRange range("tokenize");
        for (std::size_t i = 0; i < queries.size(); ++i) {
            try {
                check_utf8(queries[i].question, "question");
                Tokenizer::Encoded enc = impl_->tokenizer.encode(queries[i].question);
                if (enc.result.length == 0) {
                    fail(results[i], ErrorCode::kInvalidArgument,
                         "question " + std::to_string(i) + " has no words (empty, or only spaces and punctuation)");
                    continue;
                }
                if (enc.result.truncated) {
                    results[i].warnings.push_back("question has " + std::to_string(enc.result.total_tokens) +
                                                  " tokens; only the first " +
                                                  std::to_string(impl_->tokenizer.max_length()) + " were used");
                }
                pending[i] = {std::move(enc.ids), enc.result.length, true};
            } catch (const Error& e) {
                fail(results[i], e.code(), "question " + std::to_string(i) + ": " + e.what());
            } catch (const std::bad_alloc&) {
                fail(results[i], ErrorCode::kOutOfMemory,
                     "question " + std::to_string(i) + ": out of memory while tokenizing");
            }
        }
    }

    // Each image that a valid question asks about is prepared once, on worker threads, in the order the forward
    // passes need them: a pass runs while the images of the next ones are decoded.
    std::vector<std::size_t> order;
    {
        std::vector<char> needed(images.size(), 0);
        for (std::size_t i = 0; i < queries.size(); ++i) {
            const auto m = static_cast<std::size_t>(queries[i].image);
            if (pending[i].ok && !needed[m]) {
                needed[m] = 1;
                order.push_back(m);
            }
        }
    }
    const int decode_threads = impl_->options.decode_threads;
    const int threads = decode_threads < 0 ? ImagePreparer::default_threads(order.size())
                                           : std::min(decode_threads, static_cast<int>(order.size()));
    ImagePreparer preparer(images, order, config, impl_->options.max_image_pixels, threads);
    std::vector<const PreparedImage*> prepared(images.size(), nullptr);

    const auto max_batch = static_cast<std::size_t>(impl_->options.max_batch);
    std::vector<std::size_t> chunk;
    // The questions of a forward pass that ran out of memory fail alone: the other passes, and later calls, may
    // well fit.
    const auto fail_chunk = [&](const std::string& message) {
        for (std::size_t q : chunk) {
            results[q].answers.clear();
            results[q].attention = AttentionMaps{};
            fail(results[q], ErrorCode::kOutOfMemory, message);
        }
    };
    const auto run = [&] {
        try {
            run_chunk(*impl_, prepared, queries, pending, chunk, options, results);
        } catch (const std::bad_alloc&) {
            fail_chunk("out of memory answering a batch of " + std::to_string(chunk.size()) +
                       " questions (a smaller EngineOptions::max_batch needs less)");
        } catch (const Error& e) {
            if (e.code() != ErrorCode::kOutOfMemory) {
                throw;
            }
            // Device memory (another process took what the arena needed): as for host memory.
            fail_chunk(std::string(e.what()) + " (answering a batch of " + std::to_string(chunk.size()) +
                       " questions; a smaller EngineOptions::max_batch needs less)");
        }
        chunk.clear();
    };
    for (std::size_t i = 0; i < queries.size(); ++i) {
        if (!pending[i].ok) {
            continue;
        }
        const auto m = static_cast<std::size_t>(queries[i].image);
        const ImagePreparer::Outcome& outcome = preparer.wait(m);
        if (!outcome.image) {
            fail(results[i], outcome.code, outcome.error);
            continue;
        }
        prepared[m] = &*outcome.image;
        const auto& w = outcome.image->warnings;
        results[i].warnings.insert(results[i].warnings.end(), w.begin(), w.end());
        chunk.push_back(i);
        if (chunk.size() == max_batch) {
            run();
        }
    }
    if (!chunk.empty()) {
        run();
    }
    call.finish();
    return results;
} catch (const std::bad_alloc&) {
    throw Error(ErrorCode::kOutOfMemory, "out of memory answering " + std::to_string(queries.size()) +
                                             " questions about " + std::to_string(images.size()) + " images");
}

namespace {

void fill_classifier(
    const ModelDir& dir, const ModelOutput& out, std::size_t row, const AnswerOptions& options, Result& r);
void fill_generated(const ModelDir& dir, const ModelOutput& out, std::size_t row, Result& r);

void run_chunk(const EngineState& impl,
               const std::vector<const PreparedImage*>& prepared,
               const std::vector<Query>& queries,
               const std::vector<PendingQuery>& pending,
               const std::vector<std::size_t>& chunk,
               const AnswerOptions& options,
               std::vector<Result>& results) {
    const ModelConfig& config = impl.dir.config;
    const bool regions = config.image.encoder == ImageEncoder::kRegions;
    const int64_t L = config.text.tokenizer.max_length;

    // Distinct images of this chunk, in first-use order.
    std::map<int64_t, int64_t> row_of_image;
    std::vector<int64_t> image_index;
    for (std::size_t q : chunk) {
        const auto [it, inserted] = row_of_image.emplace(queries[q].image, static_cast<int64_t>(row_of_image.size()));
        image_index.push_back(it->second);
        (void)inserted;
    }
    std::vector<int64_t> order(row_of_image.size());
    for (const auto& [image, row] : row_of_image) {
        order[static_cast<std::size_t>(row)] = image;
    }
    std::vector<float> pixels;
    std::vector<float> region_feats;
    std::vector<float> boxes5;
    for (int64_t image : order) {
        const PreparedImage& p = *prepared[static_cast<std::size_t>(image)];
        pixels.insert(pixels.end(), p.pixels.begin(), p.pixels.end());
        region_feats.insert(region_feats.end(), p.regions.begin(), p.regions.end());
        boxes5.insert(boxes5.end(), p.boxes5.begin(), p.boxes5.end());
    }
    std::vector<int64_t> ids;
    std::vector<int64_t> lengths;
    ids.reserve(chunk.size() * static_cast<std::size_t>(L));
    for (std::size_t q : chunk) {
        ids.insert(ids.end(), pending[q].ids.begin(), pending[q].ids.end());
        lengths.push_back(pending[q].length);
    }

    ImageBatch image_batch;
    image_batch.count = static_cast<int64_t>(order.size());
    if (regions) {
        image_batch.regions = region_feats.data();
        image_batch.boxes5 = config.image.regions.box_features ? boxes5.data() : nullptr;
    } else {
        image_batch.pixels = pixels.data();
    }
    TextBatch text_batch;
    text_batch.count = static_cast<int64_t>(chunk.size());
    text_batch.ids = ids.data();
    text_batch.lengths = lengths.data();
    text_batch.image_index = image_index.data();

    // Attention maps are the poolings' weights, which the model returns in the padded layout when asked.
    const ModelOutput out = impl.model.forward(image_batch, text_batch, nullptr, options.return_attention);
    const std::vector<float>& text_pool = out.pool_text;    // [B, L, G]
    const std::vector<float>& image_pool = out.pool_image;  // [B, Ni, G]

    const TraceRange range("scoring");
    for (std::size_t row = 0; row < chunk.size(); ++row) {
        Result& r = results[chunk[row]];
        r.ok = true;
        if (config.head.type == HeadType::kClassifier) {
            fill_classifier(impl.dir, out, row, options, r);
        } else {
            fill_generated(impl.dir, out, row, r);
        }
        if (options.return_attention && !image_pool.empty()) {
            AttentionMaps& a = r.attention;
            const int64_t G = config.pool.glimpses;
            a.glimpses = G;
            a.image_tokens = static_cast<int64_t>(image_pool.size()) / (static_cast<int64_t>(chunk.size()) * G);
            a.text_tokens = L;
            if (!regions) {
                const auto [gh, gw] = image_grid(config);
                a.grid_height = gh;
                a.grid_width = gw;
            }
            a.image_pooling.resize(static_cast<std::size_t>(G * a.image_tokens));
            a.text_pooling.resize(static_cast<std::size_t>(G * L));
            for (int64_t g = 0; g < G; ++g) {
                for (int64_t t = 0; t < a.image_tokens; ++t) {
                    a.image_pooling[g * a.image_tokens + t] = image_pool[(row * a.image_tokens + t) * G + g];
                }
                for (int64_t t = 0; t < L; ++t) {
                    a.text_pooling[g * L + t] = text_pool[(row * L + t) * G + g];
                }
            }
            a.tokens = impl.tokenizer.words(queries[chunk[row]].question);
            a.tokens.resize(std::min<std::size_t>(a.tokens.size(), static_cast<std::size_t>(L)));
        }
    }
}

void fill_classifier(
    const ModelDir& dir, const ModelOutput& out, std::size_t row, const AnswerOptions& options, Result& r) {
    const auto A = static_cast<int64_t>(dir.answers.size());
    std::vector<float> scores(out.logits.begin() + static_cast<std::ptrdiff_t>(row * A),
                              out.logits.begin() + static_cast<std::ptrdiff_t>((row + 1) * A));
    if (dir.config.head.activation == Activation::kSoftmax) {
        const float max = *std::max_element(scores.begin(), scores.end());
        double sum = 0.0;
        for (float& s : scores) {
            s = std::exp(s - max);
            sum += s;
        }
        for (float& s : scores) {
            s = static_cast<float>(s / sum);
        }
    } else {
        for (float& s : scores) {
            s = 1.0f / (1.0f + std::exp(-s));
        }
    }
    const int64_t k = std::min<int64_t>(options.top_k, A);
    std::vector<int32_t> ids(static_cast<std::size_t>(k));
    std::vector<float> values(static_cast<std::size_t>(k));
    cpu::topk(scores.data(), 1, A, k, ids.data(), values.data());
    for (int64_t j = 0; j < k; ++j) {
        r.answers.push_back({dir.answers[static_cast<std::size_t>(ids[j])], values[j], ids[j]});
    }
}

void fill_generated(const ModelDir& dir, const ModelOutput& out, std::size_t row, Result& r) {
    std::string text;
    for (int32_t token : out.tokens[row]) {
        if (token == dir.config.head.eos_id) {
            break;
        }
        if (token == dir.config.head.bos_id) {
            continue;
        }
        if (!text.empty()) {
            text += ' ';
        }
        text += dir.answers[static_cast<std::size_t>(token)];
    }
    r.answers.push_back({text, out.sequence_scores[row], -1});
}

}  // namespace

const char* version() {
    return VQA_VERSION_STRING;
}

}  // namespace vqa

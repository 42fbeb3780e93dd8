// The C++ API of libvqa: load an exported model directory, answer questions about images.
//
//   vqa::Engine engine = vqa::Engine::load("models/easy-vqa");
//   std::vector<vqa::Result> results =
//       engine.answer({vqa::ImageInput::file("cat.png")}, {{0, "what color is the shape?"}});
//   std::cout << results[0].answers[0].text << "\n";
//
// Errors: loading and invalid calls throw vqa::Error (vqa/error.h). A problem with one image or one question
// (a corrupt file, an empty question) does not throw: it is reported in that question's Result, and every
// other question of the call is still answered.
//
// Threads: an Engine may be used from several threads at once. The weights are shared and read-only; every
// call to answer() works in its own workspace.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vqa/error.h"
#include "vqa/export.h"

namespace vqa {

enum class Device {
    kAuto,  // CUDA when this build has it and a device is present, else the CPU (with a one-line notice)
    kCpu,
    kCuda,  // fails with kUnsupported when the build or the machine has no CUDA device
};

enum class Precision { kFp32, kFp16, kBf16 };

// One timed stage of a profiled call: the engine's ranges ("load", "answer", "forward", "fusion.image.0",
// "fusion.image.0.cross_att", ...; docs/profiling.md lists them), as Nsight Systems shows them in the NVTX domain
// "vqa".
struct ProfileRange {
    std::string name;
    int depth = 0;             // nesting: 0 = the call itself ("load" or "answer"), children one deeper
    double start_us = 0.0;     // microseconds on a steady clock; only differences matter (one clock per process)
    double duration_us = 0.0;  // >= 0; a child lies within its parent
    bool device = false;       // true: GPU time between CUDA events on a stream; false: host wall-clock time
    int thread = 0;            // host thread within the call: 0 = the calling thread
};

// The ranges of the calls that were given this Profile, appended call after call (each call's ranges in the order
// they began, a parent before its children; a device range right after the host range it times). Profiling
// records on the calling thread only: concurrent calls that are not profiled are unaffected.
struct Profile {
    std::vector<ProfileRange> ranges;
};

struct EngineOptions {
    Device device = Device::kAuto;
    int threads = 0;     // CPU threads for the CPU backend; 0 = all cores
    int max_batch = 64;  // questions per forward pass; larger calls are split
    Precision precision = Precision::kFp32;
    int64_t max_image_pixels = 64'000'000;  // larger images are refused before decoding
    Profile* profile = nullptr;             // when set, load() appends its stages to it (and keeps no pointer)
    // Threads that decode and preprocess the images of a call while its forward passes run (in the order the
    // passes need them): -1 = as many as there are images, up to the cores and at most 8; 0 = on the calling
    // thread, each image just before its first pass.
    int decode_threads = -1;
    // Padding removal: question padding and all-zero region rows are dropped before the fusion stack and each
    // pass is packed (variable-length attention), with the answers of the padded layout, whenever that leaves
    // fewer rows (docs/padding-removal.md). false = always padded (for comparisons).
    bool pack_sequences = true;
};

// Region features of one image (bottom-up-attention style): N regions of F features, optional boxes.
struct RegionFeatures {
    int64_t num_regions = 0;      // N (padded with zero rows or truncated to the model's max_regions)
    int64_t feature_dim = 0;      // F, must equal the model's image.regions.feature_dim
    std::vector<float> features;  // [N, F]
    std::vector<float> boxes;     // [N, 4] x1, y1, x2, y2 in pixels; required when the model uses box features
    float image_width = 0.0f;     // required with boxes
    float image_height = 0.0f;
};

// One image, from any of the sources a caller may have at hand.
class VQA_API ImageInput {
public:
    enum class Kind { kFile, kEncoded, kPixels, kRegions, kRegionFile };

    // An image file (JPEG, PNG, ...), for grid models.
    static ImageInput file(std::string path);
    // An encoded image (JPEG, PNG, ...) in memory; `name` labels it in error messages.
    static ImageInput encoded(std::vector<uint8_t> bytes, std::string name = "<memory>");
    // Decoded 8-bit RGB pixels, row-major [height, width, 3].
    static ImageInput pixels(int height, int width, std::vector<uint8_t> rgb, std::string name = "<pixels>");
    // Region features in memory, for regions models.
    static ImageInput regions(RegionFeatures features, std::string name = "<regions>");
    // A region feature file (openvqa's .npz layout or safetensors; docs/model-format.md, "Region feature
    // files"), for regions models. It is read when answering: a missing or malformed file fails only the
    // questions about it.
    static ImageInput region_file(std::string path);

    Kind kind() const { return kind_; }
    const std::string& name() const { return name_; }  // the path for files and region files
    const std::vector<uint8_t>& bytes() const { return bytes_; }
    int height() const { return height_; }
    int width() const { return width_; }
    const RegionFeatures& region_features() const { return regions_; }  // kRegions only

private:
    Kind kind_ = Kind::kFile;
    std::string name_;
    std::vector<uint8_t> bytes_;  // encoded bytes, or RGB pixels
    int height_ = 0;
    int width_ = 0;
    RegionFeatures regions_;
};

// One question about images[image] of the same call.
struct Query {
    int64_t image = 0;
    std::string question;
};

struct AnswerOptions {
    int top_k = 1;                  // classifier models: this many answers per question, best first
    bool return_attention = false;  // fill Result::attention
    Profile* profile = nullptr;     // when set, answer() appends the stages of the call to it (not if it throws)
};

struct Answer {
    std::string text;
    float score = 0.0f;  // softmax or sigmoid probability (classifier), sequence probability (generating head)
    int64_t id = -1;     // answer id (classifier); -1 for generated answers
};

// Attention weights for display, per question.
struct AttentionMaps {
    int64_t image_tokens = 0;  // Ni (grid models: grid_height * grid_width, row-major)
    int64_t grid_height = 0;   // 0 for region features
    int64_t grid_width = 0;
    int64_t text_tokens = 0;           // L
    int64_t glimpses = 0;              // G
    std::vector<float> image_pooling;  // [G, Ni]: the attention pooling weights over image tokens
    std::vector<float> text_pooling;   // [G, L]
    std::vector<std::string> tokens;   // the question's tokens (valid positions only)
};

struct Result {
    bool ok = false;
    ErrorCode error_code = ErrorCode::kInternal;  // when !ok
    std::string error;                            // when !ok: what went wrong and where
    std::vector<std::string> warnings;            // e.g. a question truncated to max_length tokens
    std::vector<Answer> answers;                  // best first
    AttentionMaps attention;                      // when requested
};

struct ModelInfo {
    std::string name;
    std::string path;
    std::string image_encoder;  // "cnn", "resnet", "regions"
    std::string text_encoder;   // "lstm", "transformer"
    std::string fusion;         // "mcan", "simple"
    std::string head;           // "classifier", "generate"
    int64_t hidden = 0;
    int64_t heads = 0;
    int64_t layers = 0;
    int64_t num_answers = 0;
    int64_t vocab_size = 0;
    int64_t parameters = 0;
    int64_t input_height = 0;  // grid models
    int64_t input_width = 0;
    Device device = Device::kCpu;  // the backend in use
};

class VQA_API Engine {
public:
    // Loads and validates a model directory (docs/model-format.md). Throws vqa::Error.
    static Engine load(const std::string& model_dir, const EngineOptions& options = {});

    Engine(Engine&&) noexcept;
    Engine& operator=(Engine&&) noexcept;
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;
    ~Engine();

    // Answers every query; one Result per query, in order. Each distinct image is decoded and encoded once
    // for all of its questions. Throws vqa::Error only for a call that breaks the contract (a query naming an
    // image outside `images`) or a device failure; per-image and per-question problems go into the Results.
    std::vector<Result> answer(const std::vector<ImageInput>& images,
                               const std::vector<Query>& queries,
                               const AnswerOptions& options = {}) const;

    // Convenience: several questions about one image.
    std::vector<Result> answer(const ImageInput& image,
                               const std::vector<std::string>& questions,
                               const AnswerOptions& options = {}) const;

    const ModelInfo& info() const;
    const std::vector<std::string>& answers() const;  // the answer vocabulary (answers.json)

private:
    struct Impl;
    explicit Engine(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// The library's version, "MAJOR.MINOR.PATCH".
VQA_API const char* version();

}  // namespace vqa

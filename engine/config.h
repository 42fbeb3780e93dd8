// config.json of a model directory (docs/model-format.md §2), parsed and validated into plain structs.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace vqa {

enum class ImageEncoder { kCnn, kResnet, kRegions };
enum class ChannelOrder { kRgb, kBgr };
enum class ResizeMode { kStretch };
enum class TextEncoder { kLstm, kTransformer };
enum class FusionType { kMcan, kSimple };
enum class MaskedRow { kZero, kUniform };  // attention output of a query whose keys are all masked
enum class LayerNormVariant { kStandard, kUnbiasedStd };
enum class HeadType { kClassifier, kGenerate };
enum class Activation { kSoftmax, kSigmoid };
enum class RecurrentCell { kGru, kLstm };

struct ImageInputConfig {
    int height = 0;
    int width = 0;
    ChannelOrder channel_order = ChannelOrder::kRgb;
    ResizeMode resize = ResizeMode::kStretch;
    std::array<float, 3> mean{};  // in channel order, applied to values in [0, 1]
    std::array<float, 3> std{};
};

struct CnnConfig {
    std::vector<int> channels;  // output channels of each conv block
    bool batch_norm = false;
    float bn_eps = 0.0f;
};

struct ResnetConfig {
    int depth = 0;  // 18, 34 or 50
    int base_width = 0;
    float bn_eps = 0.0f;
};

struct RegionsConfig {
    int feature_dim = 0;  // F
    int max_regions = 0;  // N
    bool box_features = false;
    int box_dim = 0;  // only meaningful when box_features
};

struct ImageConfig {
    ImageEncoder encoder = ImageEncoder::kCnn;
    ImageInputConfig input;
    // Only the block named by `encoder` is meaningful (the others may be absent from the file).
    CnnConfig cnn;
    ResnetConfig resnet;
    RegionsConfig regions;
};

struct TokenizerConfig {
    bool lowercase = true;
    std::string remove;    // bytes deleted
    std::string to_space;  // bytes replaced by a space
    int max_length = 0;    // L
    int pad_id = 0;
    int unk_id = 0;
};

struct TextConfig {
    TextEncoder encoder = TextEncoder::kLstm;
    int embed_dim = 0;  // E
    int layers = 0;     // transformer self-attention layers (lstm: 0)
    TokenizerConfig tokenizer;
};

struct FusionConfig {
    FusionType type = FusionType::kMcan;
    int hidden = 0;  // d
    int heads = 0;   // H, divides d
    int ff = 0;      // FF
    int layers = 0;  // n
    MaskedRow masked_row = MaskedRow::kZero;
};

struct LayerNormConfig {
    LayerNormVariant variant = LayerNormVariant::kStandard;
    float eps = 0.0f;
};

struct PoolConfig {
    int mlp_hidden = 0;
    int glimpses = 0;  // G
    int out_dim = 0;
};

struct HeadConfig {
    HeadType type = HeadType::kClassifier;
    Activation activation = Activation::kSoftmax;  // classifier (optional for generate)
    // generate only:
    RecurrentCell cell = RecurrentCell::kGru;
    int embed_dim = 0;
    int hidden = 0;
    int max_length = 0;
    int bos_id = 0;
    int eos_id = 0;
};

struct ModelConfig {
    static constexpr int kFormatVersion = 1;

    std::string name;
    ImageConfig image;
    TextConfig text;
    FusionConfig fusion;
    LayerNormConfig layer_norm;
    PoolConfig pool;
    HeadConfig head;
};

// Parses and validates config.json text. `label` names the file in messages. Every defect is a
// vqa::Error(kModelFormat) naming the key path and what was expected vs found.
ModelConfig parse_model_config(std::string_view json_text, const std::string& label = "config.json");
// Reads and parses a config.json file (kIo if it cannot be read).
ModelConfig load_model_config(const std::string& path);

// Channel count of the image trunk's tokens before the adapter: last CNN channels, ResNet's final width, or
// F (+ box_dim) for regions.
int64_t image_feature_dim(const ModelConfig& config);

// ---- Tensors a config implies (docs/model-format.md §4-§8) ----

// Dimensions the config cannot know: V (rows of text.embedding.weight, from the file) and A (answers.json).
constexpr int64_t kVocabDim = -1;
constexpr int64_t kAnswerDim = -2;

struct ExpectedTensor {
    std::string name;
    std::vector<int64_t> shape;  // may hold kVocabDim / kAnswerDim
};

// Every tensor name and shape the config implies, in a stable order (image, text, fusion, pool, head).
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& config);

// "[A, 128]" / "[A=3, 128]": a shape with its symbolic dims, resolved when the size is given (>= 0).
std::string expected_shape_string(const std::vector<int64_t>& shape, int64_t vocab_rows = -1, int64_t answers = -1);

}  // namespace vqa

#include "engine/config.h"

#include <map>
#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include "tests/engine/engine_test_util.h"

namespace vqa {
namespace {

using nlohmann::json;

// The example of docs/model-format.md §2.
const char* const kExampleConfig = R"({
  "format": "vqa-engine",
  "format_version": 1,
  "name": "easy-vqa-cnn-mcan",
  "image": {
    "encoder": "cnn",
    "input": {"height": 64, "width": 64, "channel_order": "RGB", "resize": "stretch",
              "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    "cnn": {"channels": [16, 32, 64], "batch_norm": true, "bn_eps": 1e-5},
    "resnet": {"depth": 18, "base_width": 64, "bn_eps": 1e-5},
    "regions": {"feature_dim": 2048, "max_regions": 100, "box_features": false, "box_dim": 2048}
  },
  "text": {
    "encoder": "lstm",
    "embed_dim": 32,
    "layers": 0,
    "tokenizer": {"lowercase": true, "remove": ".,'!?\"()*#:;", "to_space": "-/",
                  "max_length": 14, "pad_id": 0, "unk_id": 1}
  },
  "fusion": {"type": "mcan", "hidden": 64, "heads": 4, "ff": 128, "layers": 2,
             "masked_row": "zero"},
  "layer_norm": {"variant": "standard", "eps": 1e-5},
  "pool": {"mlp_hidden": 64, "glimpses": 1, "out_dim": 128},
  "head": {"type": "classifier", "activation": "softmax"}
})";

json example() {
    return json::parse(kExampleConfig);
}

ModelConfig parse(const json& doc) {
    return parse_model_config(doc.dump());
}

TEST(ConfigTest, ParsesTheSpecExample) {
    const ModelConfig c = parse_model_config(kExampleConfig);
    EXPECT_EQ(c.name, "easy-vqa-cnn-mcan");
    EXPECT_EQ(c.image.encoder, ImageEncoder::kCnn);
    EXPECT_EQ(c.image.input.height, 64);
    EXPECT_EQ(c.image.input.channel_order, ChannelOrder::kRgb);
    EXPECT_EQ(c.image.input.std[2], 0.25f);
    EXPECT_EQ(c.image.cnn.channels, (std::vector<int>{16, 32, 64}));
    EXPECT_TRUE(c.image.cnn.batch_norm);
    EXPECT_FLOAT_EQ(c.image.cnn.bn_eps, 1e-5f);
    EXPECT_EQ(c.image.resnet.depth, 18);
    EXPECT_EQ(c.image.regions.feature_dim, 2048);
    EXPECT_EQ(c.text.encoder, TextEncoder::kLstm);
    EXPECT_EQ(c.text.embed_dim, 32);
    EXPECT_EQ(c.text.tokenizer.remove, ".,'!?\"()*#:;");
    EXPECT_EQ(c.text.tokenizer.to_space, "-/");
    EXPECT_EQ(c.text.tokenizer.max_length, 14);
    EXPECT_EQ(c.text.tokenizer.unk_id, 1);
    EXPECT_EQ(c.fusion.type, FusionType::kMcan);
    EXPECT_EQ(c.fusion.hidden, 64);
    EXPECT_EQ(c.fusion.heads, 4);
    EXPECT_EQ(c.fusion.masked_row, MaskedRow::kZero);
    EXPECT_EQ(c.layer_norm.variant, LayerNormVariant::kStandard);
    EXPECT_EQ(c.pool.out_dim, 128);
    EXPECT_EQ(c.head.type, HeadType::kClassifier);
    EXPECT_EQ(c.head.activation, Activation::kSoftmax);
}

TEST(ConfigTest, RegionsWithoutGridBlocks) {
    json doc = example();
    doc["image"] = {{"encoder", "regions"},
                    {"regions", {{"feature_dim", 12}, {"max_regions", 6}, {"box_features", true}, {"box_dim", 4}}}};
    const ModelConfig c = parse(doc);
    EXPECT_EQ(c.image.encoder, ImageEncoder::kRegions);
    EXPECT_TRUE(c.image.regions.box_features);
    EXPECT_EQ(image_feature_dim(c), 16);
}

TEST(ConfigTest, GenerateHeadAndTransformerText) {
    json doc = example();
    doc["head"] = {{"type", "generate"}, {"cell", "lstm"}, {"embed_dim", 8}, {"hidden", 12},
                   {"max_length", 5},    {"bos_id", 0},    {"eos_id", 1}};
    doc["text"]["encoder"] = "transformer";
    doc["text"]["embed_dim"] = 64;
    doc["text"]["layers"] = 2;
    doc["layer_norm"] = {{"variant", "unbiased_std"}, {"eps", 1e-6}};
    doc["fusion"]["masked_row"] = "uniform";
    const ModelConfig c = parse(doc);
    EXPECT_EQ(c.head.type, HeadType::kGenerate);
    EXPECT_EQ(c.head.cell, RecurrentCell::kLstm);
    EXPECT_EQ(c.head.hidden, 12);
    EXPECT_EQ(c.head.eos_id, 1);
    EXPECT_EQ(c.text.encoder, TextEncoder::kTransformer);
    EXPECT_EQ(c.text.layers, 2);
    EXPECT_EQ(c.layer_norm.variant, LayerNormVariant::kUnbiasedStd);
    EXPECT_EQ(c.fusion.masked_row, MaskedRow::kUniform);
}

struct BadConfig {
    std::string name;
    std::string pointer;  // JSON pointer to set (or erase, when `erase`)
    json value;
    std::string fragment;
    bool erase = false;
};

class BadConfigTest : public ::testing::TestWithParam<BadConfig> {};

TEST_P(BadConfigTest, NamesKeyAndExpectation) {
    const BadConfig& p = GetParam();
    json doc = example();
    const json::json_pointer ptr(p.pointer);
    if (p.erase) {
        doc.at(ptr.parent_pointer()).erase(ptr.back());
    } else {
        doc[ptr] = p.value;
    }
    EXPECT_VQA_ERROR(parse(doc), kModelFormat, p.fragment);
}

INSTANTIATE_TEST_SUITE_P(
    Variants,
    BadConfigTest,
    ::testing::Values(
        BadConfig{"heads_not_dividing", "/fusion/heads", 5,
                  "config.json: fusion.heads: expected an int >= 1 dividing fusion.hidden (64), got 5"},
        BadConfig{"heads_zero", "/fusion/heads", 0,
                  "fusion.heads: expected an int >= 1 dividing fusion.hidden (64), got 0"},
        BadConfig{"missing_key", "/fusion/hidden", nullptr, "config.json: fusion.hidden: required key is missing",
                  true},
        BadConfig{"unknown_key", "/fusion/hiden", 64, "fusion.hiden: unknown key (expected one of: type, hidden"},
        BadConfig{"unknown_top_key", "/extra", 1, "config.json: extra: unknown key"},
        BadConfig{"string_for_int", "/fusion/hidden", "64", "fusion.hidden: expected an int >= 1, got \"64\""},
        BadConfig{"float_for_int", "/fusion/ff", 128.0, "fusion.ff: expected an int >= 1, got 128.0"},
        BadConfig{"bool_for_int", "/pool/glimpses", true, "pool.glimpses: expected an int >= 1, got true"},
        BadConfig{"int_too_large", "/pool/out_dim", 1000000000000,
                  "pool.out_dim: expected an int >= 1, got 1000000000000"},
        BadConfig{"zero_glimpses", "/pool/glimpses", 0, "pool.glimpses: expected an int >= 1, got 0"},
        BadConfig{"zero_fusion_layers", "/fusion/layers", 0, "fusion.layers: expected an int >= 1, got 0"},
        BadConfig{"wrong_format", "/format", "onnx", "format: expected \"vqa-engine\", got \"onnx\""},
        BadConfig{"future_version", "/format_version", 2,
                  "format_version: expected 1 (the only version this reader knows), got 2"},
        BadConfig{"string_version", "/format_version", "1",
                  "format_version: expected 1 (the only version this reader knows), got \"1\""},
        BadConfig{"name_not_string", "/name", 3, "name: expected a string, got 3"},
        BadConfig{"bad_encoder", "/image/encoder", "vit",
                  "image.encoder: expected one of \"cnn\", \"resnet\", \"regions\", got \"vit\""},
        BadConfig{"missing_selected_block", "/image/cnn", nullptr, "image.cnn: required key is missing", true},
        BadConfig{"missing_input_for_grid", "/image/input", nullptr, "image.input: required key is missing", true},
        BadConfig{"std_zero", "/image/input/std/1", 0, "image.input.std[1]: expected a finite number > 0, got 0"},
        BadConfig{"mean_two_values", "/image/input/mean", json::array({0.5, 0.5}),
                  "image.input.mean: expected a list of 3 numbers"},
        BadConfig{"bad_channel_order", "/image/input/channel_order", "rgb",
                  "image.input.channel_order: expected one of \"RGB\", \"BGR\", got \"rgb\""},
        BadConfig{"bad_resize", "/image/input/resize", "letterbox", "image.input.resize: expected one of \"stretch\""},
        BadConfig{"input_too_small_for_cnn", "/image/input/height", 4,
                  "image.input.height: expected an int >= 8 (2^3 for 3 cnn blocks"},
        BadConfig{"empty_channels", "/image/cnn/channels", json::array(),
                  "image.cnn.channels: expected a list of >= 1 ints, got []"},
        BadConfig{"negative_channel", "/image/cnn/channels/1", -32,
                  "image.cnn.channels[1]: expected an int >= 1, got -32"},
        BadConfig{"zero_bn_eps", "/image/cnn/bn_eps", 0, "image.cnn.bn_eps: expected a finite number > 0, got 0"},
        BadConfig{"unselected_block_checked", "/image/resnet/depth", 101,
                  "image.resnet.depth: expected 18, 34 or 50, got 101"},
        BadConfig{"regions_box_dim_missing", "/image/regions/box_dim", nullptr,
                  "image.regions.box_dim: required key is missing", true},
        BadConfig{"lstm_with_layers", "/text/layers", 1, "text.layers: expected 0 (lstm has no layers), got 1"},
        BadConfig{"bad_text_encoder", "/text/encoder", "gru",
                  "text.encoder: expected one of \"lstm\", \"transformer\", got \"gru\""},
        BadConfig{"non_ascii_remove", "/text/tokenizer/remove", "\xc3\xa9",
                  "text.tokenizer.remove: expected a string of ASCII characters"},
        BadConfig{"to_space_overlaps_remove", "/text/tokenizer/to_space", "-/?",
                  "text.tokenizer.to_space: expected no character also in text.tokenizer.remove (both hold '?')"},
        BadConfig{"zero_max_length", "/text/tokenizer/max_length", 0,
                  "text.tokenizer.max_length: expected an int >= 1, got 0"},
        BadConfig{"unk_equals_pad", "/text/tokenizer/unk_id", 0,
                  "text.tokenizer.unk_id: expected an id different from pad_id (0), got 0"},
        BadConfig{"negative_pad", "/text/tokenizer/pad_id", -1, "text.tokenizer.pad_id: expected an int >= 0, got -1"},
        BadConfig{"lowercase_not_bool", "/text/tokenizer/lowercase", 1,
                  "text.tokenizer.lowercase: expected true or false, got 1"},
        BadConfig{"bad_masked_row", "/fusion/masked_row", "ones",
                  "fusion.masked_row: expected one of \"zero\", \"uniform\", got \"ones\""},
        BadConfig{"bad_ln_variant", "/layer_norm/variant", "rms",
                  "layer_norm.variant: expected one of \"standard\", \"unbiased_std\""},
        BadConfig{"negative_ln_eps", "/layer_norm/eps", -1e-5, "layer_norm.eps: expected a finite number > 0"},
        BadConfig{"classifier_without_activation", "/head/activation", nullptr,
                  "head.activation: required key is missing", true},
        BadConfig{"classifier_with_generate_key", "/head/cell", "gru",
                  "head.cell: only valid when head.type is \"generate\""},
        BadConfig{"bad_head_type", "/head/type", "ranker",
                  "head.type: expected one of \"classifier\", \"generate\", got \"ranker\""},
        BadConfig{"section_not_object", "/pool", json::array({1}), "config.json: pool: expected an object, got [1]"}),
    [](const ::testing::TestParamInfo<BadConfig>& info) { return info.param.name; });

TEST(ConfigTest, TransformerEmbedDimMustEqualHidden) {
    json doc = example();
    doc["text"]["encoder"] = "transformer";
    EXPECT_VQA_ERROR(parse(doc), kModelFormat, "text.embed_dim: expected 64 (= fusion.hidden for transformer), got 32");
}

TEST(ConfigTest, GenerateHeadNeedsItsKeys) {
    json doc = example();
    doc["head"] = {{"type", "generate"}, {"embed_dim", 8}, {"hidden", 12},
                   {"max_length", 5},    {"bos_id", 0},    {"eos_id", 1}};
    EXPECT_VQA_ERROR(parse(doc), kModelFormat, "head.cell: required key is missing");
}

TEST(ConfigTest, JsonLevelErrors) {
    EXPECT_VQA_ERROR(parse_model_config("{\"format\": "), kModelFormat, "config.json: invalid JSON");
    EXPECT_VQA_ERROR(parse_model_config("[]"), kModelFormat, "config.json: (top level): expected an object, got []");
    EXPECT_VQA_ERROR(parse_model_config(R"({"format": "vqa-engine", "format": "vqa-engine"})"), kModelFormat,
                     "config.json: duplicate key \"format\"");
    EXPECT_VQA_ERROR(load_model_config("/nonexistent/config.json"), kIo, "/nonexistent/config.json: cannot open");
}

std::map<std::string, std::vector<int64_t>> tensor_map(const ModelConfig& c) {
    std::map<std::string, std::vector<int64_t>> out;
    for (const ExpectedTensor& t : expected_tensors(c)) {
        EXPECT_TRUE(out.emplace(t.name, t.shape).second) << "duplicate " << t.name;
    }
    return out;
}

TEST(ExpectedTensorsTest, SpecExample) {
    const auto tensors = tensor_map(parse_model_config(kExampleConfig));
    // cnn 3 x 6, adapter 2, text 5, mcan 2 x (16 + 26), pools 2 x 6, head.norm 2, classifier 2.
    EXPECT_EQ(tensors.size(), 125u);
    EXPECT_EQ(tensors.at("image.cnn.0.conv.weight"), (std::vector<int64_t>{16, 3, 3, 3}));
    EXPECT_EQ(tensors.at("image.cnn.2.bn.running_var"), (std::vector<int64_t>{64}));
    EXPECT_EQ(tensors.at("image.adapter.weight"), (std::vector<int64_t>{64, 64}));
    EXPECT_EQ(tensors.at("text.embedding.weight"), (std::vector<int64_t>{kVocabDim, 32}));
    EXPECT_EQ(tensors.at("text.lstm.weight_ih"), (std::vector<int64_t>{256, 32}));
    EXPECT_EQ(tensors.at("fusion.text.1.ffn.fc2.weight"), (std::vector<int64_t>{64, 128}));
    EXPECT_EQ(tensors.at("fusion.image.1.cross_att.o.bias"), (std::vector<int64_t>{64}));
    EXPECT_EQ(tensors.at("fusion.image.0.norm3.weight"), (std::vector<int64_t>{64}));
    EXPECT_EQ(tensors.at("pool.image.fc2.weight"), (std::vector<int64_t>{1, 64}));
    EXPECT_EQ(tensors.at("pool.text.merge.weight"), (std::vector<int64_t>{128, 64}));
    EXPECT_EQ(tensors.at("head.norm.bias"), (std::vector<int64_t>{128}));
    EXPECT_EQ(tensors.at("head.classifier.weight"), (std::vector<int64_t>{kAnswerDim, 128}));
    EXPECT_EQ(expected_shape_string({kAnswerDim, 128}, -1, 7), "[A=7, 128]");
}

TEST(ExpectedTensorsTest, ResnetTrunksMatchTorchvision) {
    json doc = example();
    doc["image"]["encoder"] = "resnet";
    // torchvision state_dict sizes without fc.* and num_batches_tracked.
    const std::map<int, std::size_t> trunk_tensors = {{18, 100}, {34, 180}, {50, 265}};
    const std::size_t rest = 125 - 18;
    for (const auto& [depth, count] : trunk_tensors) {
        doc["image"]["resnet"]["depth"] = depth;
        const ModelConfig c = parse(doc);
        const auto tensors = tensor_map(c);
        EXPECT_EQ(tensors.size(), count + rest) << "depth " << depth;
        EXPECT_EQ(tensors.at("image.resnet.conv1.weight"), (std::vector<int64_t>{64, 3, 7, 7}));
        EXPECT_EQ(tensors.count("image.resnet.layer1.0.downsample.0.weight"), depth == 50 ? 1u : 0u);
        EXPECT_EQ(image_feature_dim(c), depth == 50 ? 2048 : 512);
    }
    doc["image"]["resnet"]["depth"] = 50;
    const auto tensors = tensor_map(parse(doc));
    EXPECT_EQ(tensors.at("image.resnet.layer4.2.conv3.weight"), (std::vector<int64_t>{2048, 512, 1, 1}));
    EXPECT_EQ(tensors.at("image.resnet.layer3.0.downsample.0.weight"), (std::vector<int64_t>{1024, 512, 1, 1}));
    EXPECT_EQ(tensors.at("image.adapter.weight"), (std::vector<int64_t>{64, 2048}));
}

TEST(ExpectedTensorsTest, SimpleFusionGenerateHead) {
    json doc = example();
    doc["fusion"]["type"] = "simple";
    doc["pool"]["glimpses"] = 2;
    doc["head"] = {{"type", "generate"}, {"cell", "gru"}, {"embed_dim", 8}, {"hidden", 12},
                   {"max_length", 5},    {"bos_id", 0},   {"eos_id", 1}};
    const auto tensors = tensor_map(parse(doc));
    EXPECT_EQ(tensors.count("fusion.image.0.self_att.q.weight"), 0u);
    EXPECT_EQ(tensors.at("fusion.text.1.cross_att.k.weight"), (std::vector<int64_t>{64, 64}));
    EXPECT_EQ(tensors.at("pool.text.merge.weight"), (std::vector<int64_t>{128, 128}));
    EXPECT_EQ(tensors.at("head.init.weight"), (std::vector<int64_t>{12, 128}));
    EXPECT_EQ(tensors.at("head.embedding.weight"), (std::vector<int64_t>{kAnswerDim, 8}));
    EXPECT_EQ(tensors.at("head.cell.weight_hh"), (std::vector<int64_t>{36, 12}));
    EXPECT_EQ(tensors.at("head.out.bias"), (std::vector<int64_t>{kAnswerDim}));
    EXPECT_EQ(tensors.count("head.classifier.weight"), 0u);
}

}  // namespace
}  // namespace vqa

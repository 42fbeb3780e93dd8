#include "engine/model_dir.h"

#include <map>
#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include "tests/engine/engine_test_util.h"

namespace vqa {
namespace {

using nlohmann::json;

constexpr int64_t kVocabRows = 6;

// A small but complete model directory, written from its parts so that each test can break one of them.
struct ModelFiles {
    json config = json::parse(R"({
      "format": "vqa-engine", "format_version": 1, "name": "tiny",
      "image": {"encoder": "cnn",
                "input": {"height": 8, "width": 8, "channel_order": "RGB", "resize": "stretch",
                          "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
                "cnn": {"channels": [4], "batch_norm": true, "bn_eps": 1e-5}},
      "text": {"encoder": "lstm", "embed_dim": 6, "layers": 0,
               "tokenizer": {"lowercase": true, "remove": "?", "to_space": "-", "max_length": 5,
                             "pad_id": 0, "unk_id": 1}},
      "fusion": {"type": "mcan", "hidden": 8, "heads": 2, "ff": 16, "layers": 1, "masked_row": "zero"},
      "layer_norm": {"variant": "standard", "eps": 1e-5},
      "pool": {"mlp_hidden": 8, "glimpses": 1, "out_dim": 8},
      "head": {"type": "classifier", "activation": "softmax"}})");
    json vocab = {{"<pad>", 0}, {"<unk>", 1}, {"what", 2}, {"color", 3}, {"shape", 4}};
    json answers = {"yes", "no", "red"};
    std::map<std::string, std::vector<int64_t>> tensors;  // name -> shape, F32
    std::string metadata = R"({"format":"vqa-engine","format_version":"1"})";
    std::string dtype = "F32";
    std::map<std::string, std::string> f32_pattern;  // tensor -> 4 bytes repeated instead of the default fill

    // Every tensor the config implies, with V = kVocabRows and A = the answers count.
    void fill_tensors() {
        tensors.clear();
        for (const ExpectedTensor& t : expected_tensors(parse_model_config(config.dump()))) {
            std::vector<int64_t> shape = t.shape;
            for (int64_t& d : shape) {
                d = d == kVocabDim ? kVocabRows : d == kAnswerDim ? static_cast<int64_t>(answers.size()) : d;
            }
            tensors[t.name] = shape;
        }
    }

    void write(const std::string& dir) const {
        test::write_file(dir + "/config.json", config.dump(2));
        test::write_file(dir + "/vocab.json", vocab.dump());
        test::write_file(dir + "/answers.json", answers.dump());
        test::SafetensorsWriter w;
        w.set_metadata(metadata);
        for (const auto& [name, shape] : tensors) {
            int64_t numel = 1;
            for (const int64_t d : shape) {
                numel *= d;
            }
            const std::size_t element = dtype == "F32" ? 4 : dtype == "I64" ? 8 : 2;
            std::string data(static_cast<std::size_t>(numel) * element, '\x3c');
            if (const auto it = f32_pattern.find(name); it != f32_pattern.end()) {
                for (std::size_t i = 0; i + 4 <= data.size(); i += 4) {
                    data.replace(i, 4, it->second);
                }
            }
            w.add_raw(name, dtype, shape, data);
        }
        w.write(dir + "/model.safetensors");
    }
};

class ModelDirTest : public ::testing::Test {
protected:
    void SetUp() override { files_.fill_tensors(); }
    ModelDir load() {
        files_.write(dir_.path());
        return load_model_dir(dir_.path());
    }

    test::TempDir dir_;
    ModelFiles files_;
};

TEST_F(ModelDirTest, LoadsAValidDirectory) {
    const ModelDir model = load();
    EXPECT_EQ(model.config.name, "tiny");
    EXPECT_EQ(model.answers, (std::vector<std::string>{"yes", "no", "red"}));
    EXPECT_EQ(model.vocab.find("shape"), 4);
    EXPECT_EQ(model.weights.size(), files_.tensors.size());
    EXPECT_EQ(model.weights.info("text.embedding.weight").shape, (std::vector<int64_t>{kVocabRows, 6}));
    EXPECT_EQ(model.weights.to_float("head.norm.weight").size(), 8u);
}

TEST_F(ModelDirTest, NonFiniteWeightsAreReported) {
    files_.f32_pattern["image.adapter.bias"] = std::string("\x00\x00\xc0\x7f", 4);  // NaN
    files_.f32_pattern["head.norm.weight"] = std::string("\x00\x00\x80\xff", 4);    // -inf
    try {
        load();
        FAIL() << "expected vqa::Error";
    } catch (const Error& e) {
        const std::string message = e.what();
        EXPECT_EQ(e.code(), ErrorCode::kModelFormat);
        EXPECT_NE(message.find("'image.adapter.bias': 8 NaN and 0 infinite of 8 values"), std::string::npos) << message;
        EXPECT_NE(message.find("'head.norm.weight': 0 NaN and 8 infinite"), std::string::npos) << message;
    }
}

TEST_F(ModelDirTest, HalfPrecisionWeightsAreAccepted) {
    files_.dtype = "BF16";
    EXPECT_EQ(load().weights.info("image.adapter.weight").dtype, DType::kBF16);
    files_.dtype = "F16";
    EXPECT_EQ(load().weights.to_float("image.adapter.bias").size(), 8u);
}

TEST_F(ModelDirTest, ListsEveryTensorProblemInOneMessage) {
    files_.tensors.erase("text.lstm.weight_ih");
    files_.tensors.erase("pool.image.merge.bias");
    files_.tensors["fusion.text.0.att.q.weight"] = {8, 9};
    files_.tensors["image.cnn.0.bn.num_batches_tracked"] = {};
    files_.tensors["extra.weight"] = {2, 2};
    files_.write(dir_.path());
    try {
        load_model_dir(dir_.path());
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::kModelFormat);
        const std::string message = e.what();
        for (const char* fragment :
             {"model.safetensors: tensors do not match the config", "missing (2):", "text.lstm.weight_ih [32, 6]",
              "pool.image.merge.bias [8]",
              "wrong shape or dtype (1):", "fusion.text.0.att.q.weight: expected [8, 8], found [8, 9]",
              "not implied by the config (2):", "extra.weight [2, 2]", "image.cnn.0.bn.num_batches_tracked []"}) {
            EXPECT_NE(message.find(fragment), std::string::npos) << "missing \"" << fragment << "\" in:\n" << message;
        }
    }
}

TEST_F(ModelDirTest, AnswersMustMatchClassifierRows) {
    files_.answers.push_back("blue");
    EXPECT_VQA_ERROR(load(), kModelFormat, "head.classifier.weight: expected [A=4, 8], found [3, 8]");
    files_.answers = json::array();
    EXPECT_VQA_ERROR(load(), kModelFormat, "answers.json: expected at least one answer");
}

TEST_F(ModelDirTest, VocabIdsMustFitTheEmbedding) {
    files_.vocab["zebra"] = kVocabRows;
    EXPECT_VQA_ERROR(load(), kModelFormat,
                     "vocab.json: entry \"zebra\": id 6 outside [0, 6) (text.embedding.weight has 6 rows)");
}

TEST_F(ModelDirTest, VocabSpecialTokens) {
    files_.vocab.erase("<unk>");
    EXPECT_VQA_ERROR(load(), kModelFormat, "vocab.json: expected \"<unk>\" with id 1 (text.tokenizer.unk_id)");
}

TEST_F(ModelDirTest, IntegerWeightsAreRejected) {
    files_.dtype = "I64";
    EXPECT_VQA_ERROR(load(), kModelFormat, "image.adapter.bias: expected dtype F32, F16 or BF16, found I64");
}

TEST_F(ModelDirTest, MetadataOfAnotherFormat) {
    files_.metadata = R"({"format":"vqa-engine","format_version":"2"})";
    EXPECT_VQA_ERROR(load(), kModelFormat, "model.safetensors: __metadata__.format_version: expected \"1\", got \"2\"");
    files_.metadata = R"({"producer":"someone"})";
    EXPECT_NO_THROW(load());
}

TEST_F(ModelDirTest, GenerateHeadIdsMustBeAnswers) {
    files_.config["head"] = {{"type", "generate"}, {"cell", "gru"}, {"embed_dim", 4}, {"hidden", 6},
                             {"max_length", 3},    {"bos_id", 0},   {"eos_id", 3}};
    files_.fill_tensors();
    EXPECT_VQA_ERROR(load(), kModelFormat,
                     "config.json: head.eos_id: expected an id < 3 (entries in answers.json), got 3");
    files_.config["head"]["eos_id"] = 1;
    const ModelDir model = load();
    EXPECT_EQ(model.weights.info("head.out.weight").shape, (std::vector<int64_t>{3, 6}));
}

TEST_F(ModelDirTest, BadConfigIsReportedFirst) {
    files_.config["fusion"]["heads"] = 3;
    EXPECT_VQA_ERROR(load(), kModelFormat,
                     "config.json: fusion.heads: expected an int >= 1 dividing fusion.hidden (8), got 3");
}

TEST_F(ModelDirTest, MissingFilesAreIoErrors) {
    EXPECT_VQA_ERROR(load_model_dir(dir_.file("absent")), kIo, "not a model directory");
    files_.write(dir_.path());
    std::remove(dir_.file("vocab.json").c_str());
    EXPECT_VQA_ERROR(load_model_dir(dir_.path()), kIo, "vocab.json: cannot open file");
    files_.write(dir_.path());
    std::remove(dir_.file("model.safetensors").c_str());
    EXPECT_VQA_ERROR(load_model_dir(dir_.path()), kIo, "model.safetensors: cannot open");
}

}  // namespace
}  // namespace vqa

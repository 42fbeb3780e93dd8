#include "engine/config.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <utility>

#include "engine/json_util.h"

namespace vqa {
namespace {

using nlohmann::json;

constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();
constexpr std::size_t kMaxConfigBytes = 1 << 20;

enum class Bound { kAny, kPositive };

template <typename E>
using EnumNames = std::initializer_list<std::pair<const char*, E>>;

// One JSON object of the config: knows its key path for messages and rejects keys it does not list.
class Section {
public:
    Section(const json& value, std::string path, const std::string& label, std::initializer_list<const char*> keys)
        : value_(value), path_(std::move(path)), label_(label) {
        if (!value_.is_object()) {
            fail_at(path_.empty() ? "(top level)" : path_, "expected an object, got ", json_repr(value_));
        }
        for (const auto& [key, item] : value_.items()) {
            bool known = false;
            std::string allowed;
            for (const char* k : keys) {
                known = known || key == k;
                allowed += allowed.empty() ? k : std::string(", ") + k;
            }
            if (!known) {
                fail_at(key_path(key), "unknown key (expected one of: ", allowed, ")");
            }
        }
    }

    std::string key_path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
    bool has(const char* key) const { return value_.contains(key); }

    const json& get(const char* key) const {
        if (!has(key)) {
            fail_at(key_path(key), "required key is missing");
        }
        return value_[key];
    }

    Section section(const char* key, std::initializer_list<const char*> keys) const {
        return Section(get(key), key_path(key), label_, keys);
    }

    // An int in [min, max]; `extra` is appended to the expectation ("dividing fusion.hidden (64)").
    int read_int(const char* key, int64_t min, int64_t max = kIntMax, const std::string& extra = "") const {
        const json& v = get(key);
        int64_t value = 0;
        bool ok = false;
        if (v.is_number_unsigned()) {
            ok = v.get<uint64_t>() <= static_cast<uint64_t>(kIntMax);
            value = ok ? static_cast<int64_t>(v.get<uint64_t>()) : 0;
        } else if (v.is_number_integer()) {
            value = v.get<int64_t>();
            ok = true;
        }
        if (!ok || value < min || value > max) {
            const std::string expect = min == max ? std::to_string(min)
                                       : max == kIntMax
                                           ? "an int >= " + std::to_string(min)
                                           : "an int in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
            fail_at(key_path(key), "expected ", expect, extra, ", got ", json_repr(v));
        }
        return static_cast<int>(value);
    }

    float read_float(const char* key, Bound bound) const { return to_float(get(key), key_path(key), bound); }

    float to_float(const json& v, const std::string& where, Bound bound) const {
        const float f = v.is_number() ? static_cast<float>(v.get<double>()) : 0.0f;
        const bool in_range = bound == Bound::kAny || f > 0.0f;
        if (!v.is_number() || !std::isfinite(f) || !in_range) {
            const char* expect = bound == Bound::kAny ? "" : " > 0";
            fail_at(where, "expected a finite number", expect, ", got ", json_repr(v));
        }
        return f;
    }

    bool read_bool(const char* key) const {
        const json& v = get(key);
        if (!v.is_boolean()) {
            fail_at(key_path(key), "expected true or false, got ", json_repr(v));
        }
        return v.get<bool>();
    }

    std::string read_string(const char* key) const {
        const json& v = get(key);
        if (!v.is_string()) {
            fail_at(key_path(key), "expected a string, got ", json_repr(v));
        }
        return v.get<std::string>();
    }

    // The tokenizer's byte sets: ASCII only, so deleting or replacing them keeps UTF-8 text valid.
    std::string read_ascii(const char* key) const {
        const json& v = get(key);
        if (!v.is_string() ||
            std::any_of(v.get_ref<const std::string&>().begin(), v.get_ref<const std::string&>().end(),
                        [](char c) { return static_cast<unsigned char>(c) >= 0x80; })) {
            fail_at(key_path(key), "expected a string of ASCII characters, got ", json_repr(v));
        }
        return v.get<std::string>();
    }

    template <typename E>
    E read_enum(const char* key, EnumNames<E> names) const {
        const json& v = get(key);
        std::string allowed;
        for (const auto& [name, value] : names) {
            if (v.is_string() && v.get_ref<const std::string&>() == name) {
                return value;
            }
            allowed += (allowed.empty() ? "\"" : ", \"") + std::string(name) + "\"";
        }
        fail_at(key_path(key), "expected one of ", allowed, ", got ", json_repr(v));
    }

    std::array<float, 3> read_float3(const char* key, Bound bound) const {
        const json& v = get(key);
        if (!v.is_array() || v.size() != 3) {
            fail_at(key_path(key), "expected a list of 3 numbers, got ", json_repr(v));
        }
        std::array<float, 3> out{};
        for (std::size_t i = 0; i < 3; ++i) {
            out[i] = to_float(v[i], key_path(key) + "[" + std::to_string(i) + "]", bound);
        }
        return out;
    }

    template <typename... Args>
    [[noreturn]] void fail_at(const std::string& where, const Args&... parts) const {
        throw_error(ErrorCode::kModelFormat, label_, ": ", where, ": ", parts...);
    }

private:
    const json& value_;
    std::string path_;
    const std::string& label_;
};

ImageConfig parse_image(const Section& root) {
    const Section s = root.section("image", {"encoder", "input", "cnn", "resnet", "regions"});
    ImageConfig image;
    image.encoder = s.read_enum<ImageEncoder>(
        "encoder",
        {{"cnn", ImageEncoder::kCnn}, {"resnet", ImageEncoder::kResnet}, {"regions", ImageEncoder::kRegions}});

    // image.input is required by the grid encoders; a regions model may carry one (validated, unused).
    const bool grid = image.encoder != ImageEncoder::kRegions;
    if (grid || s.has("input")) {
        const Section in = s.section("input", {"height", "width", "channel_order", "resize", "mean", "std"});
        image.input.height = in.read_int("height", 1);
        image.input.width = in.read_int("width", 1);
        image.input.channel_order =
            in.read_enum<ChannelOrder>("channel_order", {{"RGB", ChannelOrder::kRgb}, {"BGR", ChannelOrder::kBgr}});
        image.input.resize = in.read_enum<ResizeMode>("resize", {{"stretch", ResizeMode::kStretch}});
        image.input.mean = in.read_float3("mean", Bound::kAny);
        image.input.std = in.read_float3("std", Bound::kPositive);
    }

    // Blocks other than the selected one are optional, but validated when present (a typo is still an error).
    if (image.encoder == ImageEncoder::kCnn || s.has("cnn")) {
        const Section cnn = s.section("cnn", {"channels", "batch_norm", "bn_eps"});
        const json& channels = cnn.get("channels");
        if (!channels.is_array() || channels.empty()) {
            cnn.fail_at(cnn.key_path("channels"), "expected a list of >= 1 ints, got ", json_repr(channels));
        }
        for (std::size_t i = 0; i < channels.size(); ++i) {
            const json& c = channels[i];
            if (!(c.is_number_unsigned() && c.get<uint64_t>() >= 1 && c.get<uint64_t>() <= kIntMax)) {
                cnn.fail_at(cnn.key_path("channels") + "[" + std::to_string(i) + "]", "expected an int >= 1, got ",
                            json_repr(c));
            }
            image.cnn.channels.push_back(c.get<int>());
        }
        image.cnn.batch_norm = cnn.read_bool("batch_norm");
        image.cnn.bn_eps = cnn.read_float("bn_eps", Bound::kPositive);
        if (image.encoder == ImageEncoder::kCnn) {
            // Each block halves the size (floor): the input must survive all of them.
            const std::size_t blocks = image.cnn.channels.size();
            const int64_t need = blocks < 31 ? int64_t{1} << blocks : kIntMax + 1;
            const char* sides[] = {"height", "width"};
            const int values[] = {image.input.height, image.input.width};
            for (int i = 0; i < 2; ++i) {
                if (values[i] < need) {
                    s.fail_at(std::string("image.input.") + sides[i], "expected an int >= ", need, " (2^", blocks,
                              " for ", blocks, " cnn blocks, each halving the size), got ", values[i]);
                }
            }
        }
    }
    if (image.encoder == ImageEncoder::kResnet || s.has("resnet")) {
        const Section resnet = s.section("resnet", {"depth", "base_width", "bn_eps"});
        image.resnet.depth = resnet.read_int("depth", 0);
        if (image.resnet.depth != 18 && image.resnet.depth != 34 && image.resnet.depth != 50) {
            resnet.fail_at(resnet.key_path("depth"), "expected 18, 34 or 50, got ", image.resnet.depth);
        }
        // layer4 of depth 50 has base_width * 32 channels: keep that inside an int.
        image.resnet.base_width = resnet.read_int("base_width", 1, 1 << 20);
        image.resnet.bn_eps = resnet.read_float("bn_eps", Bound::kPositive);
    }
    if (image.encoder == ImageEncoder::kRegions || s.has("regions")) {
        const Section regions = s.section("regions", {"feature_dim", "max_regions", "box_features", "box_dim"});
        image.regions.feature_dim = regions.read_int("feature_dim", 1);
        image.regions.max_regions = regions.read_int("max_regions", 1);
        image.regions.box_features = regions.read_bool("box_features");
        image.regions.box_dim = regions.read_int("box_dim", 1);
    }
    return image;
}

TextConfig parse_text(const Section& root, const FusionConfig& fusion) {
    const Section s = root.section("text", {"encoder", "embed_dim", "layers", "tokenizer"});
    TextConfig text;
    text.encoder =
        s.read_enum<TextEncoder>("encoder", {{"lstm", TextEncoder::kLstm}, {"transformer", TextEncoder::kTransformer}});
    if (text.encoder == TextEncoder::kTransformer) {
        text.embed_dim = s.read_int("embed_dim", fusion.hidden, fusion.hidden, " (= fusion.hidden for transformer)");
        text.layers = s.read_int("layers", 0);
    } else {
        text.embed_dim = s.read_int("embed_dim", 1);
        text.layers = s.read_int("layers", 0, 0, " (lstm has no layers)");
    }

    const Section tok = s.section("tokenizer", {"lowercase", "remove", "to_space", "max_length", "pad_id", "unk_id"});
    TokenizerConfig& t = text.tokenizer;
    t.lowercase = tok.read_bool("lowercase");
    t.remove = tok.read_ascii("remove");
    t.to_space = tok.read_ascii("to_space");
    for (const char c : t.to_space) {
        if (t.remove.find(c) != std::string::npos) {
            tok.fail_at(tok.key_path("to_space"), "expected no character also in text.tokenizer.remove (both hold '", c,
                        "'), got ", json_repr(tok.get("to_space")));
        }
    }
    t.max_length = tok.read_int("max_length", 1);
    t.pad_id = tok.read_int("pad_id", 0);
    t.unk_id = tok.read_int("unk_id", 0);
    if (t.unk_id == t.pad_id) {
        tok.fail_at(tok.key_path("unk_id"), "expected an id different from pad_id (", t.pad_id, "), got ", t.unk_id);
    }
    return text;
}

FusionConfig parse_fusion(const Section& root) {
    const Section s = root.section("fusion", {"type", "hidden", "heads", "ff", "layers", "masked_row"});
    FusionConfig fusion;
    fusion.type = s.read_enum<FusionType>("type", {{"mcan", FusionType::kMcan}, {"simple", FusionType::kSimple}});
    fusion.hidden = s.read_int("hidden", 1);
    fusion.heads = s.read_int("heads", 1, kIntMax, " dividing fusion.hidden (" + std::to_string(fusion.hidden) + ")");
    if (fusion.hidden % fusion.heads != 0) {
        s.fail_at(s.key_path("heads"), "expected an int >= 1 dividing fusion.hidden (", fusion.hidden, "), got ",
                  fusion.heads);
    }
    fusion.ff = s.read_int("ff", 1);
    fusion.layers = s.read_int("layers", 1);
    fusion.masked_row =
        s.read_enum<MaskedRow>("masked_row", {{"zero", MaskedRow::kZero}, {"uniform", MaskedRow::kUniform}});
    return fusion;
}

HeadConfig parse_head(const Section& root) {
    static constexpr std::initializer_list<const char*> kGenerateKeys = {"cell",       "embed_dim", "hidden",
                                                                         "max_length", "bos_id",    "eos_id"};
    const Section s =
        root.section("head", {"type", "activation", "cell", "embed_dim", "hidden", "max_length", "bos_id", "eos_id"});
    HeadConfig head;
    head.type =
        s.read_enum<HeadType>("type", {{"classifier", HeadType::kClassifier}, {"generate", HeadType::kGenerate}});
    if (head.type == HeadType::kClassifier || s.has("activation")) {
        head.activation = s.read_enum<Activation>(
            "activation", {{"softmax", Activation::kSoftmax}, {"sigmoid", Activation::kSigmoid}});
    }
    if (head.type == HeadType::kClassifier) {
        for (const char* key : kGenerateKeys) {
            if (s.has(key)) {
                s.fail_at(s.key_path(key), "only valid when head.type is \"generate\", got head.type \"classifier\"");
            }
        }
        return head;
    }
    head.cell = s.read_enum<RecurrentCell>("cell", {{"gru", RecurrentCell::kGru}, {"lstm", RecurrentCell::kLstm}});
    head.embed_dim = s.read_int("embed_dim", 1);
    head.hidden = s.read_int("hidden", 1, kIntMax / 4, " (4 * hidden must fit an int)");
    head.max_length = s.read_int("max_length", 1);
    head.bos_id = s.read_int("bos_id", 0);
    head.eos_id = s.read_int("eos_id", 0);
    return head;
}

}  // namespace

ModelConfig parse_model_config(std::string_view json_text, const std::string& label) {
    const json doc = parse_json_strict(json_text, label);
    const Section root(doc, "", label,
                       {"format", "format_version", "name", "image", "text", "fusion", "layer_norm", "pool", "head"});
    const std::string format = root.read_string("format");
    if (format != "vqa-engine") {
        root.fail_at("format", "expected \"vqa-engine\", got ", json_repr(root.get("format")));
    }
    const json& version = root.get("format_version");
    if (!version.is_number_integer() || version.get<int64_t>() != ModelConfig::kFormatVersion) {
        root.fail_at("format_version", "expected ", ModelConfig::kFormatVersion,
                     " (the only version this reader knows), got ", json_repr(version));
    }

    ModelConfig config;
    config.name = root.read_string("name");
    config.fusion = parse_fusion(root);
    config.image = parse_image(root);
    config.text = parse_text(root, config.fusion);

    const Section ln = root.section("layer_norm", {"variant", "eps"});
    config.layer_norm.variant = ln.read_enum<LayerNormVariant>(
        "variant", {{"standard", LayerNormVariant::kStandard}, {"unbiased_std", LayerNormVariant::kUnbiasedStd}});
    config.layer_norm.eps = ln.read_float("eps", Bound::kPositive);

    const Section pool = root.section("pool", {"mlp_hidden", "glimpses", "out_dim"});
    config.pool.mlp_hidden = pool.read_int("mlp_hidden", 1);
    config.pool.glimpses = pool.read_int("glimpses", 1);
    config.pool.out_dim = pool.read_int("out_dim", 1);

    config.head = parse_head(root);
    return config;
}

ModelConfig load_model_config(const std::string& path) {
    return parse_model_config(read_file_bytes(path, kMaxConfigBytes), file_label(path));
}

}  // namespace vqa

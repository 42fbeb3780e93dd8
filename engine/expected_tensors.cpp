// The tensor names and shapes a config implies: docs/model-format.md §4-§8, one function per block.
#include <sstream>

#include "engine/config.h"

namespace vqa {
namespace {

using Shape = std::vector<int64_t>;

class TensorList {
public:
    void add(const std::string& name, Shape shape) { tensors_.push_back({name, std::move(shape)}); }

    // Linear layer `y = x Wᵀ + b`: p.weight [out, in], p.bias [out].
    void linear(const std::string& p, int64_t out, int64_t in) {
        add(p + ".weight", {out, in});
        add(p + ".bias", {out});
    }
    void layer_norm(const std::string& p, int64_t d) {
        add(p + ".weight", {d});
        add(p + ".bias", {d});
    }
    void batch_norm(const std::string& p, int64_t c) {
        for (const char* field : {"weight", "bias", "running_mean", "running_var"}) {
            add(p + "." + field, {c});
        }
    }

    std::vector<ExpectedTensor> take() { return std::move(tensors_); }

private:
    std::vector<ExpectedTensor> tensors_;
};

// §6.1: p.q, p.k, p.v, p.o, each [d, d].
void attention(TensorList& t, const std::string& p, int64_t d) {
    for (const char* proj : {"q", "k", "v", "o"}) {
        t.linear(p + "." + proj, d, d);
    }
}

// §6.2: p.fc1 [FF, d], p.fc2 [d, FF].
void feed_forward(TensorList& t, const std::string& p, int64_t d, int64_t ff) {
    t.linear(p + ".fc1", ff, d);
    t.linear(p + ".fc2", d, ff);
}

// §6.3 SA: att, norm1, ffn, norm2.
void self_attention_layer(TensorList& t, const std::string& p, int64_t d, int64_t ff) {
    attention(t, p + ".att", d);
    t.layer_norm(p + ".norm1", d);
    feed_forward(t, p + ".ffn", d, ff);
    t.layer_norm(p + ".norm2", d);
}

// §6.3 SGA: self_att, norm1, cross_att, norm2, ffn, norm3.
void guided_attention_layer(TensorList& t, const std::string& p, int64_t d, int64_t ff) {
    attention(t, p + ".self_att", d);
    t.layer_norm(p + ".norm1", d);
    attention(t, p + ".cross_att", d);
    t.layer_norm(p + ".norm2", d);
    feed_forward(t, p + ".ffn", d, ff);
    t.layer_norm(p + ".norm3", d);
}

// §6.3 GA: cross_att, norm1, ffn, norm2.
void cross_attention_layer(TensorList& t, const std::string& p, int64_t d, int64_t ff) {
    attention(t, p + ".cross_att", d);
    t.layer_norm(p + ".norm1", d);
    feed_forward(t, p + ".ffn", d, ff);
    t.layer_norm(p + ".norm2", d);
}

// §4.2
void cnn_trunk(TensorList& t, const CnnConfig& cnn) {
    int64_t in_channels = 3;
    for (std::size_t i = 0; i < cnn.channels.size(); ++i) {
        const std::string p = "image.cnn." + std::to_string(i);
        const int64_t c = cnn.channels[i];
        t.add(p + ".conv.weight", {c, in_channels, 3, 3});
        t.add(p + ".conv.bias", {c});
        if (cnn.batch_norm) {
            t.batch_norm(p + ".bn", c);
        }
        in_channels = c;
    }
}

// §4.3: torchvision names under image.resnet., convolutions without bias.
void resnet_trunk(TensorList& t, const ResnetConfig& resnet) {
    const std::string root = "image.resnet.";
    const bool bottleneck = resnet.depth == 50;
    const int64_t expansion = bottleneck ? 4 : 1;
    const int blocks_per_layer[4] = {resnet.depth == 18 ? 2 : 3, resnet.depth == 18 ? 2 : 4, resnet.depth == 18 ? 2 : 6,
                                     resnet.depth == 18 ? 2 : 3};
    int64_t in_planes = resnet.base_width;
    t.add(root + "conv1.weight", {in_planes, 3, 7, 7});
    t.batch_norm(root + "bn1", in_planes);
    for (int layer = 0; layer < 4; ++layer) {
        const int64_t planes = static_cast<int64_t>(resnet.base_width) << layer;
        const int64_t out_planes = planes * expansion;
        for (int block = 0; block < blocks_per_layer[layer]; ++block) {
            const std::string p = root + "layer" + std::to_string(layer + 1) + "." + std::to_string(block) + ".";
            if (bottleneck) {
                t.add(p + "conv1.weight", {planes, in_planes, 1, 1});
                t.batch_norm(p + "bn1", planes);
                t.add(p + "conv2.weight", {planes, planes, 3, 3});
                t.batch_norm(p + "bn2", planes);
                t.add(p + "conv3.weight", {out_planes, planes, 1, 1});
                t.batch_norm(p + "bn3", out_planes);
            } else {
                t.add(p + "conv1.weight", {planes, in_planes, 3, 3});
                t.batch_norm(p + "bn1", planes);
                t.add(p + "conv2.weight", {planes, planes, 3, 3});
                t.batch_norm(p + "bn2", planes);
            }
            // torchvision: the first block of a layer downsamples when the stride is 2 (layers 2-4) or the
            // channel count changes.
            const bool strided = block == 0 && layer > 0;
            if (strided || in_planes != out_planes) {
                t.add(p + "downsample.0.weight", {out_planes, in_planes, 1, 1});
                t.batch_norm(p + "downsample.1", out_planes);
            }
            in_planes = out_planes;
        }
    }
}

// §7: attention-flattening pooling.
void attention_pool(TensorList& t, const std::string& p, const ModelConfig& c) {
    const int64_t d = c.fusion.hidden;
    t.linear(p + ".fc1", c.pool.mlp_hidden, d);
    t.linear(p + ".fc2", c.pool.glimpses, c.pool.mlp_hidden);
    t.linear(p + ".merge", c.pool.out_dim, static_cast<int64_t>(c.pool.glimpses) * d);
}

}  // namespace

int64_t image_feature_dim(const ModelConfig& config) {
    const ImageConfig& image = config.image;
    switch (image.encoder) {
        case ImageEncoder::kCnn:
            return image.cnn.channels.empty() ? 3 : image.cnn.channels.back();
        case ImageEncoder::kResnet:
            return (static_cast<int64_t>(image.resnet.base_width) << 3) * (image.resnet.depth == 50 ? 4 : 1);
        case ImageEncoder::kRegions:
            return static_cast<int64_t>(image.regions.feature_dim) +
                   (image.regions.box_features ? image.regions.box_dim : 0);
    }
    return 0;
}

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& c) {
    TensorList t;
    const int64_t d = c.fusion.hidden;
    const int64_t ff = c.fusion.ff;

    switch (c.image.encoder) {
        case ImageEncoder::kCnn:
            cnn_trunk(t, c.image.cnn);
            break;
        case ImageEncoder::kResnet:
            resnet_trunk(t, c.image.resnet);
            break;
        case ImageEncoder::kRegions:
            if (c.image.regions.box_features) {
                t.linear("image.box", c.image.regions.box_dim, 5);
            }
            break;
    }
    t.linear("image.adapter", d, image_feature_dim(c));

    t.add("text.embedding.weight", {kVocabDim, c.text.embed_dim});
    if (c.text.encoder == TextEncoder::kLstm) {
        t.add("text.lstm.weight_ih", {4 * d, c.text.embed_dim});
        t.add("text.lstm.weight_hh", {4 * d, d});
        t.add("text.lstm.bias_ih", {4 * d});
        t.add("text.lstm.bias_hh", {4 * d});
    } else {
        t.add("text.position.weight", {c.text.tokenizer.max_length, d});
        for (int i = 0; i < c.text.layers; ++i) {
            self_attention_layer(t, "text.layers." + std::to_string(i), d, ff);
        }
    }

    for (int i = 0; i < c.fusion.layers; ++i) {
        const std::string text_layer = "fusion.text." + std::to_string(i);
        if (c.fusion.type == FusionType::kMcan) {
            self_attention_layer(t, text_layer, d, ff);
        } else {
            cross_attention_layer(t, text_layer, d, ff);
        }
    }
    if (c.fusion.type == FusionType::kMcan) {
        for (int i = 0; i < c.fusion.layers; ++i) {
            guided_attention_layer(t, "fusion.image." + std::to_string(i), d, ff);
        }
    }

    attention_pool(t, "pool.text", c);
    attention_pool(t, "pool.image", c);
    t.layer_norm("head.norm", c.pool.out_dim);

    if (c.head.type == HeadType::kClassifier) {
        t.linear("head.classifier", kAnswerDim, c.pool.out_dim);
    } else {
        const int64_t gates = c.head.cell == RecurrentCell::kGru ? 3 : 4;
        const int64_t h = c.head.hidden;
        t.linear("head.init", h, c.pool.out_dim);
        t.add("head.embedding.weight", {kAnswerDim, c.head.embed_dim});
        t.add("head.cell.weight_ih", {gates * h, c.head.embed_dim});
        t.add("head.cell.weight_hh", {gates * h, h});
        t.add("head.cell.bias_ih", {gates * h});
        t.add("head.cell.bias_hh", {gates * h});
        t.linear("head.out", kAnswerDim, h);
    }
    return t.take();
}

std::string expected_shape_string(const std::vector<int64_t>& shape, int64_t vocab_rows, int64_t answers) {
    std::ostringstream out;
    out << '[';
    for (std::size_t i = 0; i < shape.size(); ++i) {
        out << (i ? ", " : "");
        if (shape[i] == kVocabDim) {
            out << 'V';
            if (vocab_rows >= 0) {
                out << '=' << vocab_rows;
            }
        } else if (shape[i] == kAnswerDim) {
            out << 'A';
            if (answers >= 0) {
                out << '=' << answers;
            }
        } else {
            out << shape[i];
        }
    }
    out << ']';
    return out.str();
}

}  // namespace vqa

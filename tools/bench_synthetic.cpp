// vqa_bench's synthetic inputs (tools/bench_synthetic.h); tools/bench_inputs.py is their Python twin.
#include "tools/bench_synthetic.h"

#include <algorithm>
#include <fstream>
#include <stdexcept>
#include <utility>

namespace vqa::tools {
namespace {

using nlohmann::json;

constexpr uint64_t kImageStreamTag = 0x696d616765730000ULL;     // "images\0\0"
constexpr uint64_t kQuestionStreamTag = 0x7175657374696f6eULL;  // "question"
// Region boxes are drawn inside an image of this size (pixels).
constexpr int kRegionImageWidth = 640;
constexpr int kRegionImageHeight = 480;
constexpr const char* kInputsFormat = "vqa_bench-inputs/1";

uint64_t splitmix64(uint64_t x) {
    uint64_t z = x + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// Value i of stream `index` of a family: splitmix64(splitmix64(splitmix64(seed ^ tag) + index) + i), mod 2^64.
class Stream {
public:
    Stream(uint64_t seed, uint64_t tag, uint64_t index) : key_(splitmix64(splitmix64(seed ^ tag) + index)) {}
    uint64_t at(uint64_t i) const { return splitmix64(key_ + i); }

private:
    uint64_t key_;
};

json read_json_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) {
        throw std::runtime_error("cannot open " + path);
    }
    try {
        return json::parse(in);
    } catch (const json::exception& e) {
        throw std::runtime_error(path + ": " + e.what());
    }
}

// The region count of an image: value max_regions * (feature_dim + 4) of its stream, the first one past those of
// a full image (max_regions rows of features, then 4 box values per row), so that region r's features and box are
// the same whatever the count.
int64_t region_count(const BenchModel& m, const Stream& s) {
    const auto span = static_cast<uint64_t>(m.max_count - m.min_count + 1);
    return m.min_count + static_cast<int64_t>(s.at(static_cast<uint64_t>(m.max_regions * (m.feature_dim + 4))) % span);
}

// Image `index` of the run: the same for every batch size.
vqa::ImageInput make_image(const BenchModel& m, uint64_t seed, int64_t index) {
    const Stream s(seed, kImageStreamTag, static_cast<uint64_t>(index));
    const std::string name = "synthetic-" + std::to_string(index);
    if (!m.regions) {
        std::vector<uint8_t> rgb(static_cast<std::size_t>(m.height) * m.width * 3);
        for (std::size_t i = 0; i < rgb.size(); ++i) {
            rgb[i] = static_cast<uint8_t>(s.at(i) >> 56);
        }
        return vqa::ImageInput::pixels(m.height, m.width, std::move(rgb), name);
    }
    vqa::RegionFeatures f;
    f.num_regions = region_count(m, s);
    f.feature_dim = m.feature_dim;
    f.features.resize(static_cast<std::size_t>(f.num_regions * m.feature_dim));
    for (std::size_t i = 0; i < f.features.size(); ++i) {
        f.features[i] = static_cast<float>(s.at(i) >> 40) * 0x1p-24f;  // [0, 1), exact in fp32
    }
    if (m.box_features) {
        f.image_width = static_cast<float>(kRegionImageWidth);
        f.image_height = static_cast<float>(kRegionImageHeight);
        const auto base = static_cast<uint64_t>(m.max_regions * m.feature_dim);  // where a full image's boxes begin
        for (uint64_t r = 0; r < static_cast<uint64_t>(f.num_regions); ++r) {
            const uint64_t x1 = s.at(base + 4 * r) % (kRegionImageWidth / 2);
            const uint64_t y1 = s.at(base + 4 * r + 1) % (kRegionImageHeight / 2);
            const uint64_t w = 32 + s.at(base + 4 * r + 2) % (kRegionImageWidth / 2 - 32);
            const uint64_t h = 24 + s.at(base + 4 * r + 3) % (kRegionImageHeight / 2 - 24);
            for (uint64_t v : {x1, y1, x1 + w, y1 + h}) {
                f.boxes.push_back(static_cast<float>(v));
            }
        }
    }
    return vqa::ImageInput::regions(std::move(f), name);
}

// Question `index` of the run: 1..max_length random words, the same for every batch size.
std::string make_question(const BenchModel& m, uint64_t seed, int64_t index) {
    const Stream s(seed, kQuestionStreamTag, static_cast<uint64_t>(index));
    const uint64_t words = 1 + s.at(0) % static_cast<uint64_t>(m.max_length);
    std::string question;
    for (uint64_t i = 0; i < words; ++i) {
        question += (i == 0 ? "" : " ") + m.words[s.at(1 + i) % m.words.size()];
    }
    return question;
}

}  // namespace

BenchModel read_bench_model(const std::string& dir) {
    const json config = read_json_file(dir + "/config.json");
    const json vocab = read_json_file(dir + "/vocab.json");
    BenchModel m;
    try {
        const json& image = config.at("image");
        m.regions = image.at("encoder").get<std::string>() == "regions";
        if (m.regions) {
            const json& r = image.at("regions");
            m.max_regions = r.at("max_regions").get<int64_t>();
            m.feature_dim = r.at("feature_dim").get<int64_t>();
            m.box_features = r.at("box_features").get<bool>();
            m.min_count = m.max_regions;
            m.max_count = m.max_regions;
        } else {
            m.height = image.at("input").at("height").get<int>();
            m.width = image.at("input").at("width").get<int>();
        }
        const json& tokenizer = config.at("text").at("tokenizer");
        m.max_length = tokenizer.at("max_length").get<int64_t>();
        const auto pad = tokenizer.at("pad_id").get<int64_t>();
        const auto unk = tokenizer.at("unk_id").get<int64_t>();
        std::vector<std::pair<int64_t, std::string>> by_id;
        for (const auto& [token, id] : vocab.items()) {
            const auto value = id.get<int64_t>();
            if (value != pad && value != unk && !token.empty() && token.find(' ') == std::string::npos) {
                by_id.emplace_back(value, token);
            }
        }
        std::sort(by_id.begin(), by_id.end());
        for (auto& entry : by_id) {
            m.words.push_back(std::move(entry.second));
        }
    } catch (const json::exception& e) {
        throw std::runtime_error(dir + ": config.json or vocab.json: " + e.what());
    }
    if (m.words.empty() || m.max_length < 1) {
        throw std::runtime_error(dir + ": vocab.json has no words besides pad and unk, or max_length < 1");
    }
    return m;
}

Workload make_workload(const BenchModel& m, uint64_t seed, int batch, int questions_per_image) {
    Workload w;
    w.batch = batch;
    const int images = (batch + questions_per_image - 1) / questions_per_image;
    for (int i = 0; i < images; ++i) {
        w.images.push_back(make_image(m, seed, i));
    }
    for (int q = 0; q < batch; ++q) {
        w.queries.push_back({q / questions_per_image, make_question(m, seed, q)});
    }
    return w;
}

nlohmann::json image_json(const BenchModel& m) {
    if (m.regions) {
        return {{"kind", "regions"},
                {"num_regions", m.max_regions},
                {"region_counts", {m.min_count, m.max_count}},
                {"feature_dim", m.feature_dim},
                {"boxes", m.box_features},
                {"image_width", kRegionImageWidth},
                {"image_height", kRegionImageHeight}};
    }
    return {{"kind", "pixels"}, {"height", m.height}, {"width", m.width}};
}

void write_inputs(const std::string& path,
                  const std::string& model_dir,
                  uint64_t seed,
                  int questions_per_image,
                  const BenchModel& m,
                  const std::vector<Workload>& workloads) {
    json batches = json::array();
    for (const Workload& w : workloads) {
        json questions = json::array();
        json image_index = json::array();
        for (const vqa::Query& q : w.queries) {
            questions.push_back(q.question);
            image_index.push_back(q.image);
        }
        json entry = {
            {"batch", w.batch}, {"images", w.images.size()}, {"image_index", image_index}, {"questions", questions}};
        if (m.regions) {
            json counts = json::array();
            for (const vqa::ImageInput& image : w.images) {
                counts.push_back(image.region_features().num_regions);
            }
            entry["num_regions"] = counts;
        }
        batches.push_back(entry);
    }
    const json out = {{"format", kInputsFormat},
                      {"generator", "splitmix64"},
                      {"seed", seed},
                      {"model", model_dir},
                      {"questions_per_image", questions_per_image},
                      {"image", image_json(m)},
                      {"batches", batches}};
    std::ofstream file(path);
    if (!(file << out.dump(1) << "\n")) {
        throw std::runtime_error("cannot write " + path);
    }
}

}  // namespace vqa::tools

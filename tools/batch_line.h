// One line of vqa_infer's JSON Lines batch file, parsed on its own (a bad line fails only itself).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

namespace vqa::tools {

// Objects and arrays nested deeper than this make the line an error.
constexpr int kMaxBatchLineDepth = 64;

struct BatchLine {
    int64_t number = 0;     // 1-based
    nlohmann::json id;      // the line's id, or its number
    std::string image;      // the image file, or the region feature file when `features`
    bool features = false;  // the line gave "features" (a region feature file) instead of "image"
    std::string question;
    std::string error;  // set when the line cannot be used
};

// Parses `text`, line `number` of a batch file in `base_dir` (relative image and feature paths are relative to
// it). A line names an image file ("image") or a region feature file ("features").
// `seen_ids` holds the ids of the earlier lines (as JSON text): a repeated id is an error of this line.
inline BatchLine parse_batch_line(const std::string& text,
                                  int64_t number,
                                  const std::string& base_dir,
                                  std::set<std::string>& seen_ids) {
    using nlohmann::json;
    BatchLine line;
    line.number = number;
    line.id = number;
    // Deeper values are dropped while parsing: copying or printing one ("[[[[...") would recurse off the stack.
    bool too_deep = false;
    const json::parser_callback_t limit_depth = [&](int depth, json::parse_event_t event, json&) {
        if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
            depth >= kMaxBatchLineDepth) {
            too_deep = true;
            return false;
        }
        return true;
    };
    json j = json::parse(text, limit_depth, /*allow_exceptions=*/false);
    if (too_deep) {
        line.error = "line " + std::to_string(number) + ": JSON nested deeper than " +
                     std::to_string(kMaxBatchLineDepth) + " levels";
        return line;
    }
    if (j.is_discarded() || !j.is_object()) {
        line.error = "line " + std::to_string(number) + ": not a JSON object";
        return line;
    }
    if (j.contains("id")) {
        line.id = j["id"];
        if (!seen_ids.insert(line.id.dump()).second) {
            line.error = "line " + std::to_string(number) + ": duplicate id " + line.id.dump();
            return line;
        }
    }
    if (j.contains("image") && j.contains("features")) {
        line.error = "line " + std::to_string(number) + ": give \"image\" or \"features\", not both";
        return line;
    }
    line.features = j.contains("features");
    const char* image_key = line.features ? "features" : "image";
    for (const char* key : {image_key, "question"}) {
        if (!j.contains(key) || !j[key].is_string()) {
            line.error = "line " + std::to_string(number) + ": expected a string field \"" + key + "\"";
            return line;
        }
    }
    line.image = j[image_key].get<std::string>();
    if (!line.image.empty() && line.image[0] != '/' && !base_dir.empty()) {
        line.image = base_dir + "/" + line.image;  // relative paths are relative to the batch file
    }
    line.question = j["question"].get<std::string>();
    return line;
}

}  // namespace vqa::tools

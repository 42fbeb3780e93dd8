// Strict JSON and file reading for the model directory: every file is untrusted input.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "kernels/check.h"
#include "vqa/error.h"

namespace vqa {

// Throws vqa::Error(code) with the parts concatenated: the loader's messages carry no source location because
// they describe the user's file, not our code.
template <typename... Args>
[[noreturn]] void throw_error(ErrorCode code, const Args&... parts) {
    throw Error(code, detail::str_cat(parts...));
}

// The whole file as bytes. kIo if it cannot be opened or read, or is larger than `max_bytes`.
std::string read_file_bytes(const std::string& path, std::size_t max_bytes);

// The last component of a path, for messages ("config.json" rather than "/models/a/config.json").
std::string file_label(const std::string& path);

// Objects and arrays nested deeper than this are refused (the model files nest 4 levels at most).
constexpr int kMaxJsonDepth = 64;

// Parses `text` as JSON. Unlike nlohmann's default, a key repeated in one object is an error (the last one
// would silently win), and so is nesting deeper than kMaxJsonDepth. Errors are vqa::Error(kModelFormat)
// naming `label` and, for syntax errors, the byte.
nlohmann::json parse_json_strict(std::string_view text, const std::string& label);

// "object", "array", "string", "int", "number", "bool" or "null": the JSON type as a reader would name it.
std::string json_type_name(const nlohmann::json& value);

// Short quoted rendering of a JSON value for "got ..." in messages (long values are cut).
std::string json_repr(const nlohmann::json& value);

}  // namespace vqa

#include "engine/json_util.h"

#include <fstream>
#include <set>
#include <vector>

namespace vqa {

std::string read_file_bytes(const std::string& path, std::size_t max_bytes) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) {
        throw_error(ErrorCode::kIo, path, ": cannot open file");
    }
    const std::streamoff size = in.tellg();
    if (size < 0) {
        throw_error(ErrorCode::kIo, path, ": cannot determine the file size");
    }
    if (static_cast<unsigned long long>(size) > max_bytes) {
        throw_error(ErrorCode::kIo, path, ": file is ", size, " bytes, more than the limit of ", max_bytes);
    }
    std::string bytes(static_cast<std::size_t>(size), '\0');
    in.seekg(0);
    if (size > 0 && !in.read(bytes.data(), size)) {
        throw_error(ErrorCode::kIo, path, ": read failed");
    }
    return bytes;
}

std::string file_label(const std::string& path) {
    std::string trimmed = path;
    while (trimmed.size() > 1 && trimmed.back() == '/') {
        trimmed.pop_back();
    }
    const std::size_t slash = trimmed.find_last_of('/');
    return slash == std::string::npos ? trimmed : trimmed.substr(slash + 1);
}

nlohmann::json parse_json_strict(std::string_view text, const std::string& label) {
    using Event = nlohmann::json::parse_event_t;
    // One set of seen keys per open object, innermost last.
    std::vector<std::set<std::string>> open_objects;
    auto reject_duplicates = [&](int depth, Event event, nlohmann::json& parsed) {
        // nlohmann's parser is iterative but copying and printing a value (json_repr) recurse: a hostile
        // "[[[[..." would overflow the stack.
        if ((event == Event::object_start || event == Event::array_start) && depth >= kMaxJsonDepth) {
            throw_error(ErrorCode::kModelFormat, label, ": JSON nested deeper than ", kMaxJsonDepth, " levels");
        }
        if (event == Event::object_start) {
            open_objects.emplace_back();
        } else if (event == Event::object_end) {
            open_objects.pop_back();
        } else if (event == Event::key && !open_objects.empty()) {
            const std::string& key = parsed.get_ref<const std::string&>();
            if (!open_objects.back().insert(key).second) {
                throw_error(ErrorCode::kModelFormat, label, ": duplicate key \"", key, "\" in one JSON object");
            }
        }
        return true;
    };
    try {
        return nlohmann::json::parse(text.begin(), text.end(), reject_duplicates);
    } catch (const nlohmann::json::exception& e) {
        // A syntax error, or a number too large for a double (out_of_range.406). e.what() is
        // "[json.exception.parse_error.101] parse error at line 1, column 2: ..."; keep the tail.
        std::string what = e.what();
        const std::size_t pos = what.find("] ");
        throw_error(ErrorCode::kModelFormat, label,
                    ": invalid JSON: ", pos == std::string::npos ? what : what.substr(pos + 2));
    }
}

std::string json_type_name(const nlohmann::json& value) {
    switch (value.type()) {
        case nlohmann::json::value_t::object:
            return "object";
        case nlohmann::json::value_t::array:
            return "array";
        case nlohmann::json::value_t::string:
            return "string";
        case nlohmann::json::value_t::boolean:
            return "bool";
        case nlohmann::json::value_t::number_integer:
        case nlohmann::json::value_t::number_unsigned:
            return "int";
        case nlohmann::json::value_t::number_float:
            return "number";
        case nlohmann::json::value_t::null:
            return "null";
        default:
            return "unknown";
    }
}

std::string json_repr(const nlohmann::json& value) {
    constexpr std::size_t kMaxChars = 60;
    std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (text.size() > kMaxChars) {
        text = text.substr(0, kMaxChars) + "...";
    }
    return text;
}

}  // namespace vqa

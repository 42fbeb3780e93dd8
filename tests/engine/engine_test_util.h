// Helpers for the model-loading tests: a temporary directory, file writing, a safetensors writer and an error
// matcher.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

#include <gtest/gtest.h>

#include "vqa/error.h"

namespace vqa::test {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents at scope exit.
class TempDir {
public:
    TempDir() {
        const char* base = std::getenv("TMPDIR");
        std::string pattern = std::string(base && *base ? base : "/tmp") + "/vqa_test_XXXXXX";
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw std::runtime_error("mkdtemp failed for " + pattern);
        }
        path_ = pattern;
    }
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::string& path() const { return path_; }
    std::string file(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

inline void write_file(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
        throw std::runtime_error("cannot write " + path);
    }
}

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// 8-byte little-endian length + header + data: the raw safetensors layout, for hand-built (broken) files.
inline std::string safetensors_bytes(const std::string& header, const std::string& data, uint64_t length_field) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) {
        out[static_cast<std::size_t>(i)] = static_cast<char>((length_field >> (8 * i)) & 0xff);
    }
    return out + header + data;
}
inline std::string safetensors_bytes(const std::string& header, const std::string& data) {
    return safetensors_bytes(header, data, header.size());
}

// Writes well-formed safetensors files tensor by tensor (contiguous, in insertion order).
class SafetensorsWriter {
public:
    void add_raw(const std::string& name,
                 const std::string& dtype,
                 const std::vector<int64_t>& shape,
                 const std::string& bytes) {
        std::string shape_json = "[";
        for (std::size_t i = 0; i < shape.size(); ++i) {
            shape_json += (i ? "," : "") + std::to_string(shape[i]);
        }
        shape_json += "]";
        entries_ += (entries_.empty() ? "" : ",") +
                    ("\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape_json + ",\"data_offsets\":[" +
                     std::to_string(data_.size()) + "," + std::to_string(data_.size() + bytes.size()) + "]}");
        data_ += bytes;
    }
    template <typename T>
    void add(const std::string& name,
             const std::string& dtype,
             const std::vector<int64_t>& shape,
             const std::vector<T>& values) {
        std::string bytes(values.size() * sizeof(T), '\0');
        if (!values.empty()) {
            std::memcpy(bytes.data(), values.data(), bytes.size());
        }
        add_raw(name, dtype, shape, bytes);
    }
    void add_f32(const std::string& name, const std::vector<int64_t>& shape, float fill = 0.5f) {
        int64_t numel = 1;
        for (const int64_t d : shape) {
            numel *= d;
        }
        add(name, "F32", shape, std::vector<float>(static_cast<std::size_t>(numel), fill));
    }
    void set_metadata(const std::string& metadata_json) { metadata_ = metadata_json; }

    std::string bytes() const {
        std::string header = "{";
        if (!metadata_.empty()) {
            header += "\"__metadata__\":" + metadata_ + (entries_.empty() ? "" : ",");
        }
        header += entries_ + "}";
        return safetensors_bytes(header, data_);
    }
    void write(const std::string& path) const { write_file(path, bytes()); }

private:
    std::string entries_;
    std::string data_;
    std::string metadata_;
};

}  // namespace vqa::test

// Runs `statement`, which must throw vqa::Error with `expected_code` (an ErrorCode enumerator) and a message containing
// `fragment`.
#define EXPECT_VQA_ERROR(statement, expected_code, fragment)                                                          \
    do {                                                                                                              \
        try {                                                                                                         \
            statement;                                                                                                \
            ADD_FAILURE() << "expected vqa::Error containing \"" << (fragment) << "\", nothing was thrown";           \
        } catch (const ::vqa::Error& error_) {                                                                        \
            EXPECT_EQ(::vqa::error_code_name(error_.code()), ::vqa::error_code_name(::vqa::ErrorCode::expected_code)) \
                << error_.what();                                                                                     \
            EXPECT_NE(std::string(error_.what()).find(fragment), std::string::npos)                                   \
                << "message: " << error_.what() << "\nexpected fragment: " << (fragment);                             \
        }                                                                                                             \
    } while (0)

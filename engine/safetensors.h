// Memory-mapped safetensors reader: the header is validated completely when the file is opened, so every
// accessor afterwards works on offsets known to lie inside the mapping.
//
// Format: u64 little-endian header length n, n bytes of JSON {name: {"dtype", "shape", "data_offsets"}} with an
// optional "__metadata__" object of strings, then the data; offsets are relative to the end of the header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/dtype.h"

namespace vqa {

struct TensorInfo {
    std::string name;
    DType dtype = DType::kF32;
    std::vector<int64_t> shape;  // [] for a scalar
    int64_t numel = 0;
    std::size_t begin = 0;  // byte offsets into the data section, end - begin == numel * dtype_size
    std::size_t end = 0;
};

// A read-only view of a tensor's bytes inside the mapping (valid while the SafetensorsFile lives).
struct ByteView {
    const std::byte* data = nullptr;
    std::size_t size = 0;
};

class SafetensorsFile {
public:
    static constexpr std::size_t kMaxHeaderBytes = 100'000'000;

    // Opens, maps and validates `path`. kIo if it cannot be opened or mapped, kModelFormat for any defect.
    explicit SafetensorsFile(const std::string& path);
    ~SafetensorsFile();
    SafetensorsFile(SafetensorsFile&& other) noexcept;
    SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
    SafetensorsFile(const SafetensorsFile&) = delete;
    SafetensorsFile& operator=(const SafetensorsFile&) = delete;

    const std::string& path() const { return path_; }
    // The file name alone, as the messages use it ("model.safetensors").
    const std::string& label() const { return label_; }

    std::vector<std::string> names() const;  // sorted
    bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
    std::size_t size() const { return tensors_.size(); }
    const TensorInfo& info(const std::string& name) const;  // kModelFormat if absent
    const std::map<std::string, std::string>& metadata() const { return metadata_; }

    ByteView raw(const std::string& name) const;
    // Any float dtype, widened exactly to fp32 (F16 and BF16 values are all representable in fp32).
    std::vector<float> to_float(const std::string& name) const;
    // Integer tensors (I64, I32, U8) as T; kModelFormat if the dtype is a float or a value does not fit in T.
    template <typename T>
    std::vector<T> as(const std::string& name) const;

private:
    void parse_header(std::size_t header_bytes);
    void unmap() noexcept;

    std::string path_;
    std::string label_;
    void* mapping_ = nullptr;
    std::size_t mapped_bytes_ = 0;
    const std::byte* data_ = nullptr;  // start of the data section
    std::size_t data_bytes_ = 0;
    std::unordered_map<std::string, TensorInfo> tensors_;
    std::map<std::string, std::string> metadata_;
};

extern template std::vector<int64_t> SafetensorsFile::as<int64_t>(const std::string&) const;
extern template std::vector<int32_t> SafetensorsFile::as<int32_t>(const std::string&) const;
extern template std::vector<uint8_t> SafetensorsFile::as<uint8_t>(const std::string&) const;

}  // namespace vqa

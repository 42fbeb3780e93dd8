#include "engine/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

#include "engine/json_util.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; a big-endian host needs byte swapping in the reader");

namespace vqa {
namespace {

constexpr std::size_t kLengthPrefixBytes = 8;

std::string errno_text() {
    return std::strerror(errno);
}

// Reads a non-negative JSON integer into a uint64; false if `value` is anything else.
bool get_non_negative_int(const nlohmann::json& value, uint64_t* out) {
    if (value.is_number_unsigned()) {
        *out = value.get<uint64_t>();
        return true;
    }
    if (value.is_number_integer() && value.get<int64_t>() >= 0) {
        *out = static_cast<uint64_t>(value.get<int64_t>());
        return true;
    }
    return false;
}

template <typename T>
T load_unaligned(const std::byte* p) {
    T value;
    std::memcpy(&value, p, sizeof(T));
    return value;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path), label_(file_label(path)) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        throw_error(ErrorCode::kIo, path, ": cannot open: ", errno_text());
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw_error(ErrorCode::kIo, path, ": not a regular file");
    }
    const std::size_t file_bytes = static_cast<std::size_t>(st.st_size);
    if (file_bytes < kLengthPrefixBytes) {
        ::close(fd);
        throw_error(ErrorCode::kModelFormat, label_, ": file is ", file_bytes,
                    " bytes, too short for the 8-byte header length (truncated or not a safetensors file)");
    }
    void* mapping = ::mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    const std::string map_error = mapping == MAP_FAILED ? errno_text() : "";
    ::close(fd);  // the mapping keeps the file alive
    if (mapping == MAP_FAILED) {
        throw_error(ErrorCode::kIo, path, ": mmap failed: ", map_error);
    }
    mapping_ = mapping;
    mapped_bytes_ = file_bytes;
    try {
        const uint64_t header_bytes = load_unaligned<uint64_t>(static_cast<const std::byte*>(mapping_));
        if (header_bytes > file_bytes - kLengthPrefixBytes) {
            throw_error(ErrorCode::kModelFormat, label_, ": header length ", header_bytes, " exceeds the ",
                        file_bytes - kLengthPrefixBytes,
                        " bytes after the length prefix (truncated or not a safetensors file)");
        }
        if (header_bytes > kMaxHeaderBytes) {
            throw_error(ErrorCode::kModelFormat, label_, ": header length ", header_bytes, " exceeds the limit of ",
                        kMaxHeaderBytes, " bytes");
        }
        data_ = static_cast<const std::byte*>(mapping_) + kLengthPrefixBytes + header_bytes;
        data_bytes_ = file_bytes - kLengthPrefixBytes - static_cast<std::size_t>(header_bytes);
        parse_header(static_cast<std::size_t>(header_bytes));
    } catch (...) {
        unmap();
        throw;
    }
}

SafetensorsFile::~SafetensorsFile() {
    unmap();
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : path_(std::move(other.path_)),
      label_(std::move(other.label_)),
      mapping_(std::exchange(other.mapping_, nullptr)),
      mapped_bytes_(std::exchange(other.mapped_bytes_, 0)),
      data_(std::exchange(other.data_, nullptr)),
      data_bytes_(std::exchange(other.data_bytes_, 0)),
      tensors_(std::move(other.tensors_)),
      metadata_(std::move(other.metadata_)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
    if (this != &other) {
        unmap();
        path_ = std::move(other.path_);
        label_ = std::move(other.label_);
        mapping_ = std::exchange(other.mapping_, nullptr);
        mapped_bytes_ = std::exchange(other.mapped_bytes_, 0);
        data_ = std::exchange(other.data_, nullptr);
        data_bytes_ = std::exchange(other.data_bytes_, 0);
        tensors_ = std::move(other.tensors_);
        metadata_ = std::move(other.metadata_);
    }
    return *this;
}

void SafetensorsFile::unmap() noexcept {
    if (mapping_ != nullptr) {
        ::munmap(mapping_, mapped_bytes_);
        mapping_ = nullptr;
        mapped_bytes_ = 0;
        data_ = nullptr;
        data_bytes_ = 0;
    }
}

void SafetensorsFile::parse_header(std::size_t header_bytes) {
    const char* text = reinterpret_cast<const char*>(static_cast<const std::byte*>(mapping_) + kLengthPrefixBytes);
    const nlohmann::json header = parse_json_strict(std::string_view(text, header_bytes), label_ + " header");
    if (!header.is_object()) {
        throw_error(ErrorCode::kModelFormat, label_, ": header must be a JSON object, found ", json_type_name(header));
    }
    for (const auto& [name, entry] : header.items()) {
        if (name == "__metadata__") {
            if (!entry.is_object()) {
                throw_error(ErrorCode::kModelFormat, label_, ": __metadata__ must be an object of strings, found ",
                            json_type_name(entry));
            }
            for (const auto& [key, value] : entry.items()) {
                if (!value.is_string()) {
                    throw_error(ErrorCode::kModelFormat, label_, ": __metadata__.", key, ": expected a string, found ",
                                json_type_name(value));
                }
                metadata_[key] = value.get<std::string>();
            }
            continue;
        }
        const std::string where = label_ + ": tensor '" + name + "'";
        if (!entry.is_object()) {
            throw_error(ErrorCode::kModelFormat, where, ": expected an object, found ", json_type_name(entry));
        }
        for (const auto& [key, value] : entry.items()) {
            if (key != "dtype" && key != "shape" && key != "data_offsets") {
                throw_error(ErrorCode::kModelFormat, where, ": unexpected key \"", key,
                            "\" (expected dtype, shape, data_offsets)");
            }
        }
        for (const char* key : {"dtype", "shape", "data_offsets"}) {
            if (!entry.contains(key)) {
                throw_error(ErrorCode::kModelFormat, where, ": missing \"", key, "\"");
            }
        }

        TensorInfo info;
        info.name = name;
        const nlohmann::json& dtype = entry["dtype"];
        if (!dtype.is_string()) {
            throw_error(ErrorCode::kModelFormat, where, ": dtype must be a string, found ", json_repr(dtype));
        }
        if (!dtype_from_name(dtype.get_ref<const std::string&>(), &info.dtype)) {
            throw_error(ErrorCode::kModelFormat, where, ": unsupported dtype ", json_repr(dtype),
                        " (supported: F32, F16, BF16, I64, I32, U8)");
        }
        const std::size_t element_bytes = dtype_size(info.dtype);

        const nlohmann::json& shape = entry["shape"];
        if (!shape.is_array()) {
            throw_error(ErrorCode::kModelFormat, where, ": shape must be a list of ints, found ", json_repr(shape));
        }
        uint64_t numel = 1;
        for (const nlohmann::json& dim_value : shape) {
            uint64_t dim = 0;
            if (!get_non_negative_int(dim_value, &dim) ||
                dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
                throw_error(ErrorCode::kModelFormat, where, ": shape must be a list of non-negative ints, found ",
                            json_repr(shape));
            }
            uint64_t bytes = 0;
            if (__builtin_mul_overflow(numel, dim, &numel) || __builtin_mul_overflow(numel, element_bytes, &bytes) ||
                numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
                throw_error(ErrorCode::kModelFormat, where, ": shape ", json_repr(shape),
                            " has an element count that overflows 64 bits");
            }
            info.shape.push_back(static_cast<int64_t>(dim));
        }
        info.numel = static_cast<int64_t>(numel);
        const uint64_t expected_bytes = numel * element_bytes;

        const nlohmann::json& offsets = entry["data_offsets"];
        uint64_t begin = 0;
        uint64_t end = 0;
        if (!offsets.is_array() || offsets.size() != 2 || !get_non_negative_int(offsets[0], &begin) ||
            !get_non_negative_int(offsets[1], &end)) {
            throw_error(ErrorCode::kModelFormat, where,
                        ": data_offsets must be [begin, end] with non-negative ints, found ", json_repr(offsets));
        }
        if (begin > end) {
            throw_error(ErrorCode::kModelFormat, where, ": data_offsets [", begin, ", ", end, "] has begin > end");
        }
        if (end > data_bytes_) {
            throw_error(ErrorCode::kModelFormat, where, ": data_offsets [", begin, ", ", end, "] end past the ",
                        data_bytes_, " bytes of data (truncated file?)");
        }
        if (end - begin != expected_bytes) {
            throw_error(ErrorCode::kModelFormat, where, ": data_offsets [", begin, ", ", end, "] span ", end - begin,
                        " bytes, expected ", numel, " elements * ", element_bytes, " bytes (", dtype_name(info.dtype),
                        " ", shape_string(info.shape), ") = ", expected_bytes);
        }
        info.begin = static_cast<std::size_t>(begin);
        info.end = static_cast<std::size_t>(end);
        tensors_.emplace(name, std::move(info));
    }

    // Overlap check: sort the non-empty ranges by start; each must end before the next begins.
    std::vector<const TensorInfo*> ranges;
    for (const auto& [name, info] : tensors_) {
        if (info.end > info.begin) {
            ranges.push_back(&info);
        }
    }
    std::sort(ranges.begin(), ranges.end(), [](const TensorInfo* a, const TensorInfo* b) {
        return a->begin != b->begin ? a->begin < b->begin : a->name < b->name;
    });
    for (std::size_t i = 1; i < ranges.size(); ++i) {
        const TensorInfo& prev = *ranges[i - 1];
        const TensorInfo& cur = *ranges[i];
        if (cur.begin < prev.end) {
            throw_error(ErrorCode::kModelFormat, label_, ": tensors '", prev.name, "' [", prev.begin, ", ", prev.end,
                        ") and '", cur.name, "' [", cur.begin, ", ", cur.end, ") overlap");
        }
    }
}

std::vector<std::string> SafetensorsFile::names() const {
    std::vector<std::string> out;
    out.reserve(tensors_.size());
    for (const auto& [name, info] : tensors_) {
        out.push_back(name);
    }
    std::sort(out.begin(), out.end());
    return out;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
    const auto it = tensors_.find(name);
    if (it == tensors_.end()) {
        throw_error(ErrorCode::kModelFormat, label_, ": no tensor '", name, "'");
    }
    return it->second;
}

ByteView SafetensorsFile::raw(const std::string& name) const {
    const TensorInfo& t = info(name);
    return ByteView{data_ + t.begin, t.end - t.begin};
}

std::vector<float> SafetensorsFile::to_float(const std::string& name) const {
    const TensorInfo& t = info(name);
    const std::byte* src = data_ + t.begin;
    std::vector<float> out(static_cast<std::size_t>(t.numel));
    switch (t.dtype) {
        case DType::kF32:
            if (!out.empty()) {  // memcpy from/to null is undefined even for 0 bytes
                std::memcpy(out.data(), src, out.size() * sizeof(float));
            }
            break;
        case DType::kF16:
            for (std::size_t i = 0; i < out.size(); ++i) {
                out[i] = half_to_float(load_unaligned<uint16_t>(src + 2 * i));
            }
            break;
        case DType::kBF16:
            for (std::size_t i = 0; i < out.size(); ++i) {
                out[i] = bfloat16_to_float(load_unaligned<uint16_t>(src + 2 * i));
            }
            break;
        default:
            throw_error(ErrorCode::kModelFormat, label_, ": tensor '", name,
                        "': expected a float dtype (F32, F16, BF16), found ", dtype_name(t.dtype));
    }
    return out;
}

template <typename T>
std::vector<T> SafetensorsFile::as(const std::string& name) const {
    static_assert(std::is_integral_v<T>, "as<T> reads integer tensors; use to_float for float tensors");
    const TensorInfo& t = info(name);
    const std::byte* src = data_ + t.begin;
    std::vector<T> out(static_cast<std::size_t>(t.numel));
    for (std::size_t i = 0; i < out.size(); ++i) {
        int64_t value = 0;
        switch (t.dtype) {
            case DType::kI64:
                value = load_unaligned<int64_t>(src + 8 * i);
                break;
            case DType::kI32:
                value = load_unaligned<int32_t>(src + 4 * i);
                break;
            case DType::kU8:
                value = static_cast<int64_t>(src[i]);
                break;
            default:
                throw_error(ErrorCode::kModelFormat, label_, ": tensor '", name,
                            "': expected an integer dtype (I64, I32, U8), found ", dtype_name(t.dtype));
        }
        if (value < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
            (value > 0 && static_cast<uint64_t>(value) > static_cast<uint64_t>(std::numeric_limits<T>::max()))) {
            throw_error(ErrorCode::kModelFormat, label_, ": tensor '", name, "': element ", i, " = ", value,
                        " does not fit the requested integer type");
        }
        out[i] = static_cast<T>(value);
    }
    return out;
}

template std::vector<int64_t> SafetensorsFile::as<int64_t>(const std::string&) const;
template std::vector<int32_t> SafetensorsFile::as<int32_t>(const std::string&) const;
template std::vector<uint8_t> SafetensorsFile::as<uint8_t>(const std::string&) const;

}  // namespace vqa

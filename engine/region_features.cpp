#include "engine/region_features.h"

#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <zip.h>

#include "engine/json_util.h"
#include "engine/safetensors.h"

namespace vqa {
namespace {

// The element types a region file may hold; all are little-endian (or single bytes) and widened to double.
struct NpyType {
    const char* descr;
    std::size_t size;
    bool is_float;
};

constexpr NpyType kNpyTypes[] = {
    {"<f4", 4, true},  {"<f8", 8, true},  {"<i8", 8, false}, {"<i4", 4, false}, {"<i2", 2, false},
    {"|i1", 1, false}, {"<u8", 8, false}, {"<u4", 4, false}, {"<u2", 2, false}, {"|u1", 1, false},
};

template <typename T>
double load_as_double(const std::byte* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return static_cast<double>(v);
}

double element_to_double(const NpyType& type, const std::byte* p) {
    const std::string d = type.descr;
    if (d == "<f4")
        return load_as_double<float>(p);
    if (d == "<f8")
        return load_as_double<double>(p);
    if (d == "<i8")
        return load_as_double<int64_t>(p);
    if (d == "<i4")
        return load_as_double<int32_t>(p);
    if (d == "<i2")
        return load_as_double<int16_t>(p);
    if (d == "|i1")
        return load_as_double<int8_t>(p);
    if (d == "<u8")
        return load_as_double<uint64_t>(p);
    if (d == "<u4")
        return load_as_double<uint32_t>(p);
    if (d == "<u2")
        return load_as_double<uint16_t>(p);
    return load_as_double<uint8_t>(p);
}

// A reader of the header's Python dict literal: {'descr': '<f4', 'fortran_order': False, 'shape': (6, 5), }.
class NpyHeaderParser {
public:
    NpyHeaderParser(const std::string& text, const std::string& label) : s_(text), label_(label) {}

    void parse(std::string* descr, bool* fortran_order, std::vector<int64_t>* shape) {
        skip_space();
        expect('{');
        std::map<std::string, bool> seen;
        for (;;) {
            skip_space();
            if (peek() == '}') {
                ++pos_;
                break;
            }
            const std::string key = quoted();
            if (seen[key]) {
                fail("key '" + key + "' given twice");
            }
            seen[key] = true;
            skip_space();
            expect(':');
            skip_space();
            if (key == "descr") {
                *descr = quoted();
            } else if (key == "fortran_order") {
                *fortran_order = boolean();
            } else if (key == "shape") {
                *shape = tuple();
            } else {
                fail("unexpected key '" + key + "'");
            }
            skip_space();
            if (peek() == ',') {
                ++pos_;
            } else if (peek() != '}') {
                fail("expected ',' or '}' at byte " + std::to_string(pos_));
            }
        }
        skip_space();
        if (pos_ != s_.size()) {
            fail("unexpected text after the dict");
        }
        for (const char* key : {"descr", "fortran_order", "shape"}) {
            if (!seen[key]) {
                fail(std::string("no '") + key + "' key");
            }
        }
    }

private:
    [[noreturn]] void fail(const std::string& what) const {
        throw_error(ErrorCode::kInvalidArgument, label_, ": bad .npy header: ", what);
    }
    char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
    void skip_space() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t' || s_[pos_] == '\r')) {
            ++pos_;
        }
    }
    void expect(char c) {
        if (peek() != c) {
            fail(std::string("expected '") + c + "' at byte " + std::to_string(pos_));
        }
        ++pos_;
    }
    std::string quoted() {
        const char q = peek();
        if (q != '\'' && q != '"') {
            fail("expected a quoted string at byte " + std::to_string(pos_));
        }
        const std::size_t end = s_.find(q, pos_ + 1);
        if (end == std::string::npos) {
            fail("unterminated string");
        }
        std::string out = s_.substr(pos_ + 1, end - pos_ - 1);
        pos_ = end + 1;
        return out;
    }
    bool boolean() {
        if (s_.compare(pos_, 4, "True") == 0) {
            pos_ += 4;
            return true;
        }
        if (s_.compare(pos_, 5, "False") == 0) {
            pos_ += 5;
            return false;
        }
        fail("expected True or False at byte " + std::to_string(pos_));
    }
    std::vector<int64_t> tuple() {
        constexpr int64_t kMaxDim = int64_t{1} << 40;
        expect('(');
        std::vector<int64_t> out;
        for (;;) {
            skip_space();
            if (peek() == ')') {
                ++pos_;
                return out;
            }
            if (peek() < '0' || peek() > '9') {
                fail("expected a dimension at byte " + std::to_string(pos_));
            }
            int64_t v = 0;
            while (peek() >= '0' && peek() <= '9') {
                v = v * 10 + (peek() - '0');
                if (v > kMaxDim) {
                    fail("dimension too large");
                }
                ++pos_;
            }
            out.push_back(v);
            if (out.size() > 32) {
                fail("more than 32 dimensions");
            }
            skip_space();
            if (peek() == ',') {
                ++pos_;
            } else if (peek() != ')') {
                fail("expected ',' or ')' at byte " + std::to_string(pos_));
            }
        }
    }

    const std::string& s_;
    const std::string& label_;
    std::size_t pos_ = 0;
};

uint32_t read_le(const std::byte* p, int bytes) {
    uint32_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) {
        v = (v << 8) | static_cast<uint32_t>(p[i]);
    }
    return v;
}

// One array of an archive, by its name without ".npy"; nullopt if the archive has no such entry.
std::optional<NpyArray> read_npz_entry(zip_t* archive, const std::string& path, const std::string& name) {
    const std::string entry = name + ".npy";
    const std::string label = path + ": " + entry;
    const zip_int64_t index = zip_name_locate(archive, entry.c_str(), 0);
    if (index < 0) {
        return std::nullopt;
    }
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(archive, static_cast<zip_uint64_t>(index), 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE)) {
        throw_error(ErrorCode::kInvalidArgument, label, ": cannot read the entry: ", zip_strerror(archive));
    }
    if (st.size > kMaxRegionFileBytes) {
        throw_error(ErrorCode::kInvalidArgument, label, ": ", st.size, " bytes is more than the limit of ",
                    kMaxRegionFileBytes);
    }
    const std::unique_ptr<zip_file_t, int (*)(zip_file_t*)> file(
        zip_fopen_index(archive, static_cast<zip_uint64_t>(index), 0), zip_fclose);
    if (!file) {
        throw_error(ErrorCode::kInvalidArgument, label, ": cannot open the entry: ", zip_strerror(archive));
    }
    std::vector<std::byte> bytes(static_cast<std::size_t>(st.size));
    std::size_t done = 0;
    while (done < bytes.size()) {
        const zip_int64_t n = zip_fread(file.get(), bytes.data() + done, bytes.size() - done);
        if (n <= 0) {
            // libzip checks the CRC at the end of the entry: a corrupt or truncated entry fails here.
            throw_error(ErrorCode::kInvalidArgument, label, ": cannot read the entry (",
                        n < 0 ? zip_file_strerror(file.get()) : "it ends early", ")");
        }
        done += static_cast<std::size_t>(n);
    }
    return parse_npy(bytes.data(), bytes.size(), label);
}

struct ZipArchiveDeleter {
    void operator()(zip_t* z) const { zip_discard(z); }
};

float scalar(const NpyArray& a, const std::string& label) {
    if (a.values.size() != 1 || a.shape.size() > 1) {
        throw_error(ErrorCode::kInvalidArgument, label, ": expected a scalar, got shape ", shape_string(a.shape));
    }
    return static_cast<float>(a.values[0]);
}

std::vector<float> to_floats(const std::vector<double>& values) {
    return std::vector<float>(values.begin(), values.end());
}

RegionFeatures load_npz(const std::string& path, const std::string& bytes) {
    zip_error_t error;
    zip_error_init(&error);
    zip_source_t* source = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &error);
    if (source == nullptr) {
        const std::string what = zip_error_strerror(&error);
        zip_error_fini(&error);
        throw_error(ErrorCode::kInvalidArgument, path, ": cannot read the zip archive: ", what);
    }
    std::unique_ptr<zip_t, ZipArchiveDeleter> archive(zip_open_from_source(source, ZIP_RDONLY | ZIP_CHECKCONS, &error));
    if (!archive) {
        zip_source_free(source);
        const std::string what = zip_error_strerror(&error);
        zip_error_fini(&error);
        throw_error(ErrorCode::kInvalidArgument, path, ": not a readable .npz (zip) archive: ", what);
    }
    zip_error_fini(&error);

    const std::optional<NpyArray> x = read_npz_entry(archive.get(), path, "x");
    if (!x) {
        throw_error(ErrorCode::kInvalidArgument, path, ": no x.npy entry (the region features, [F, N])");
    }
    if (x->descr != "<f4" && x->descr != "<f8") {
        throw_error(ErrorCode::kInvalidArgument, path, ": x.npy: expected float32 or float64 ('<f4', '<f8'), got '",
                    x->descr, "'");
    }
    if (x->shape.size() != 2) {
        throw_error(ErrorCode::kInvalidArgument, path, ": x.npy: expected 2 dimensions [F, N], got shape ",
                    shape_string(x->shape));
    }
    RegionFeatures rf;
    rf.feature_dim = x->shape[0];
    rf.num_regions = x->shape[1];
    rf.features.resize(x->values.size());
    for (int64_t f = 0; f < rf.feature_dim; ++f) {  // [F, N] -> [N, F]
        for (int64_t n = 0; n < rf.num_regions; ++n) {
            rf.features[n * rf.feature_dim + f] = static_cast<float>(x->values[f * rf.num_regions + n]);
        }
    }
    if (const std::optional<NpyArray> num = read_npz_entry(archive.get(), path, "num_bbox")) {
        const float n = scalar(*num, path + ": num_bbox.npy");
        if (n != static_cast<float>(rf.num_regions)) {
            throw_error(ErrorCode::kInvalidArgument, path, ": num_bbox.npy says ", n, " regions, x.npy holds ",
                        rf.num_regions);
        }
    }
    if (const std::optional<NpyArray> bbox = read_npz_entry(archive.get(), path, "bbox")) {
        if (bbox->shape != std::vector<int64_t>{rf.num_regions, 4}) {
            throw_error(ErrorCode::kInvalidArgument, path, ": bbox.npy: expected shape [", rf.num_regions,
                        ", 4] (the regions of x.npy), got ", shape_string(bbox->shape));
        }
        rf.boxes = to_floats(bbox->values);
    }
    const std::optional<NpyArray> w = read_npz_entry(archive.get(), path, "image_w");
    const std::optional<NpyArray> h = read_npz_entry(archive.get(), path, "image_h");
    if (w.has_value() != h.has_value()) {
        throw_error(ErrorCode::kInvalidArgument, path, ": image_w.npy and image_h.npy come together, found only ",
                    w ? "image_w.npy" : "image_h.npy");
    }
    if (w) {
        rf.image_width = scalar(*w, path + ": image_w.npy");
        rf.image_height = scalar(*h, path + ": image_h.npy");
    }
    return rf;
}

RegionFeatures load_safetensors(const std::string& path) {
    try {
        const SafetensorsFile file(path);
        if (!file.contains("features")) {
            throw_error(ErrorCode::kInvalidArgument, path, ": no \"features\" tensor ([N, F])");
        }
        const TensorInfo& info = file.info("features");
        if (info.shape.size() != 2 || !dtype_is_float(info.dtype)) {
            throw_error(ErrorCode::kInvalidArgument, path, ": \"features\": expected a float tensor [N, F], got ",
                        dtype_name(info.dtype), " ", shape_string(info.shape));
        }
        RegionFeatures rf;
        rf.num_regions = info.shape[0];
        rf.feature_dim = info.shape[1];
        rf.features = file.to_float("features");
        const auto numeric = [&](const std::string& name) {
            if (dtype_is_float(file.info(name).dtype)) {
                return file.to_float(name);
            }
            const std::vector<int64_t> ints = file.as<int64_t>(name);
            return std::vector<float>(ints.begin(), ints.end());
        };
        if (file.contains("boxes")) {
            if (file.info("boxes").shape != std::vector<int64_t>{rf.num_regions, 4}) {
                throw_error(ErrorCode::kInvalidArgument, path, ": \"boxes\": expected shape [", rf.num_regions,
                            ", 4], got ", shape_string(file.info("boxes").shape));
            }
            rf.boxes = numeric("boxes");
        }
        if (file.contains("image_size")) {
            if (file.info("image_size").shape != std::vector<int64_t>{2}) {
                throw_error(ErrorCode::kInvalidArgument, path,
                            ": \"image_size\": expected shape [2] (width, height), got ",
                            shape_string(file.info("image_size").shape));
            }
            const std::vector<float> size = numeric("image_size");
            rf.image_width = size[0];
            rf.image_height = size[1];
        }
        return rf;
    } catch (const Error& e) {
        if (e.code() == ErrorCode::kModelFormat) {  // the reader's code for a defective file: here, bad input
            throw_error(ErrorCode::kInvalidArgument, path, ": ", e.what());
        }
        throw;
    }
}

}  // namespace

NpyArray parse_npy(const std::byte* data, std::size_t size, const std::string& label) {
    static constexpr unsigned char kMagic[] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    if (size < 10 || std::memcmp(data, kMagic, sizeof kMagic) != 0) {
        throw_error(ErrorCode::kInvalidArgument, label, ": not a .npy array (no \\x93NUMPY magic)");
    }
    const int major = static_cast<int>(data[6]);
    if (major < 1 || major > 3 || static_cast<int>(data[7]) != 0) {
        throw_error(ErrorCode::kInvalidArgument, label, ": .npy format version ", major, ".", static_cast<int>(data[7]),
                    " (expected 1.0, 2.0 or 3.0)");
    }
    const std::size_t length_bytes = major == 1 ? 2 : 4;
    const std::size_t prefix = 8 + length_bytes;
    if (size < prefix) {
        throw_error(ErrorCode::kInvalidArgument, label, ": .npy header truncated");
    }
    const std::size_t header_len = read_le(data + 8, static_cast<int>(length_bytes));
    if (header_len > size - prefix) {
        throw_error(ErrorCode::kInvalidArgument, label, ": .npy header of ", header_len, " bytes, only ", size - prefix,
                    " in the entry");
    }
    const std::string header(reinterpret_cast<const char*>(data + prefix), header_len);
    NpyArray out;
    bool fortran_order = false;
    NpyHeaderParser(header, label).parse(&out.descr, &fortran_order, &out.shape);

    const NpyType* type = nullptr;
    for (const NpyType& t : kNpyTypes) {
        type = out.descr == t.descr ? &t : type;
    }
    if (type == nullptr) {
        throw_error(ErrorCode::kInvalidArgument, label, ": unsupported dtype '", out.descr,
                    "' (expected a little-endian float or integer: '<f4', '<f8', '<i8', '<i4', '|u1', ...)");
    }
    uint64_t numel = 1;
    for (int64_t d : out.shape) {
        const auto dim = static_cast<uint64_t>(d);
        if (dim != 0 && numel > kMaxRegionFileBytes / dim) {  // checked before multiplying: no overflow
            throw_error(ErrorCode::kInvalidArgument, label, ": shape ", shape_string(out.shape), " is too large");
        }
        numel *= dim;
    }
    const std::size_t data_bytes = size - prefix - header_len;
    if (numel * type->size != data_bytes) {
        throw_error(ErrorCode::kInvalidArgument, label, ": shape ", shape_string(out.shape), " of '", out.descr,
                    "' needs ", numel * type->size, " data bytes, the entry holds ", data_bytes);
    }
    const std::byte* values = data + prefix + header_len;
    out.values.resize(static_cast<std::size_t>(numel));
    if (fortran_order && out.shape.size() > 2) {
        throw_error(ErrorCode::kInvalidArgument, label, ": fortran_order arrays of more than 2 dimensions");
    }
    if (fortran_order && out.shape.size() == 2) {  // column-major [R, C]: element (r, c) at c * R + r
        const auto rows = static_cast<std::size_t>(out.shape[0]);
        const auto cols = static_cast<std::size_t>(out.shape[1]);
        for (std::size_t r = 0; r < rows; ++r) {
            for (std::size_t c = 0; c < cols; ++c) {
                out.values[r * cols + c] = element_to_double(*type, values + (c * rows + r) * type->size);
            }
        }
    } else {
        for (std::size_t i = 0; i < out.values.size(); ++i) {
            out.values[i] = element_to_double(*type, values + i * type->size);
        }
    }
    return out;
}

RegionFeatures load_region_features(const std::string& path, int64_t expected_feature_dim) {
    const std::string bytes = read_file_bytes(path, kMaxRegionFileBytes);
    const bool is_zip = bytes.size() >= 4 && bytes[0] == 'P' && bytes[1] == 'K';
    RegionFeatures rf = is_zip ? load_npz(path, bytes) : load_safetensors(path);
    if (expected_feature_dim > 0 && rf.feature_dim != expected_feature_dim) {
        throw_error(ErrorCode::kInvalidArgument, path, ": ", rf.feature_dim, " features per region, the model expects ",
                    expected_feature_dim, " (image.regions.feature_dim)");
    }
    return rf;
}

}  // namespace vqa

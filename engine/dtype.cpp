#include "engine/dtype.h"

#include <cstring>
#include <sstream>

namespace vqa {
namespace {

struct DTypeName {
    const char* name;
    DType dtype;
};
constexpr DTypeName kDTypeNames[] = {{"F32", DType::kF32}, {"F16", DType::kF16}, {"BF16", DType::kBF16},
                                     {"I64", DType::kI64}, {"I32", DType::kI32}, {"U8", DType::kU8}};

}  // namespace

const char* dtype_name(DType dtype) {
    for (const DTypeName& entry : kDTypeNames) {
        if (entry.dtype == dtype) {
            return entry.name;
        }
    }
    return "?";
}

bool dtype_from_name(std::string_view name, DType* dtype) {
    for (const DTypeName& entry : kDTypeNames) {
        if (name == entry.name) {
            *dtype = entry.dtype;
            return true;
        }
    }
    return false;
}

std::size_t dtype_size(DType dtype) {
    switch (dtype) {
        case DType::kF32:
        case DType::kI32:
            return 4;
        case DType::kF16:
        case DType::kBF16:
            return 2;
        case DType::kI64:
            return 8;
        case DType::kU8:
            return 1;
    }
    return 0;
}

bool dtype_is_float(DType dtype) {
    return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
}

float half_to_float(uint16_t bits) {
    const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
    const uint32_t exponent = (bits >> 10) & 0x1fu;
    uint32_t mantissa = bits & 0x3ffu;
    uint32_t out;
    if (exponent == 0x1f) {  // inf / NaN: keep the payload
        out = sign | 0x7f800000u | (mantissa << 13);
    } else if (exponent != 0) {  // normal: rebias 15 -> 127
        out = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        out = sign;
    } else {  // subnormal half: normalise; every one is a normal float
        int shift = 0;
        while ((mantissa & 0x400u) == 0) {
            mantissa <<= 1;
            ++shift;
        }
        out = sign | (static_cast<uint32_t>(113 - shift) << 23) | ((mantissa & 0x3ffu) << 13);
    }
    float result;
    std::memcpy(&result, &out, sizeof(result));
    return result;
}

float bfloat16_to_float(uint16_t bits) {
    const uint32_t out = static_cast<uint32_t>(bits) << 16;
    float result;
    std::memcpy(&result, &out, sizeof(result));
    return result;
}

std::string shape_string(const std::vector<int64_t>& shape) {
    std::ostringstream out;
    out << '[';
    for (std::size_t i = 0; i < shape.size(); ++i) {
        out << (i ? ", " : "") << shape[i];
    }
    out << ']';
    return out.str();
}

}  // namespace vqa

// Element types of model files (the safetensors subset the engine reads) and their exact widening to fp32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace vqa {

enum class DType { kF32, kF16, kBF16, kI64, kI32, kU8 };

const char* dtype_name(DType dtype);  // the safetensors spelling: "F32", "BF16", ...
// The DType that safetensors spells `name`; false for any other name (F64, I8, BOOL, ...).
bool dtype_from_name(std::string_view name, DType* dtype);
std::size_t dtype_size(DType dtype);
bool dtype_is_float(DType dtype);

// IEEE half and bfloat16 bit patterns to fp32, exact (every value of both is representable in fp32).
float half_to_float(uint16_t bits);
float bfloat16_to_float(uint16_t bits);

// "[2, 3]" for messages.
std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace vqa

// What every kernel test shares: fixed-seed inputs, NaN poisoning, the comparison against a reference, and
// in CUDA builds device detection, dtype conversion, streams and guarded device buffers.
//
// Comparisons take float vectors whatever the kernel's element type: convert a half or bf16 output with
// to_float<T>(), and feed the reference round_to<T>(input), the exact values the kernel saw.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iomanip>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#if VQA_WITH_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "kernels/cuda_check.h"
#endif

namespace vqa::test {

// Uniform values in [lo, hi) from a fixed seed, the same on every platform and standard library (SplitMix64, not
// std::uniform_real_distribution). An exact zero is replaced by hi / 2, so no input is ever all zeros and no
// element can hide a missed write behind a zero.
inline std::vector<float> random_vector(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
    std::vector<float> values(n);
    uint64_t state = seed;
    for (float& value : values) {
        state += 0x9E3779B97F4A7C15ull;
        uint64_t z = state;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        const float unit = static_cast<float>(z >> 40) * 0x1.0p-24f;  // 24 random bits: exact in float, in [0, 1)
        value = lo + (hi - lo) * unit;
        if (value == 0.0f) {
            value = hi != 0.0f ? 0.5f * hi : 0.5f * lo;
        }
    }
    return values;
}

// Fills with quiet NaNs: an element that an op forgets to write then fails the comparison.
inline void poison_nan(std::vector<float>& values) {
    std::fill(values.begin(), values.end(), std::numeric_limits<float>::quiet_NaN());
}

struct Tolerance {
    double nmse = 1e-7;  // sum((found - expected)^2) / sum(expected^2), over the finite elements
    double atol = 1e-6;  // per element: |found - expected| <= atol + rtol * |expected|
    double rtol = 1e-5;
};

// For ops that only move data (permutations, gathers): every element bit-exact.
inline constexpr Tolerance kExact{0.0, 0.0, 0.0};

namespace detail {

// "123 [1, 2, 3, 4]": the flat index, and the multi-index when a shape is given.
inline std::string format_index(size_t index, const std::vector<int64_t>& shape) {
    std::ostringstream out;
    out << index;
    if (shape.empty()) {
        return out.str();
    }
    std::vector<int64_t> coordinates(shape.size());
    auto rest = static_cast<int64_t>(index);
    for (size_t d = shape.size(); d-- > 0;) {
        coordinates[d] = shape[d] > 0 ? rest % shape[d] : 0;
        rest = shape[d] > 0 ? rest / shape[d] : 0;
    }
    out << " [";
    for (size_t d = 0; d < coordinates.size(); ++d) {
        out << (d > 0 ? ", " : "") << coordinates[d];
    }
    out << "]";
    return out.str();
}

}  // namespace detail

// Compares an op's output with its reference, in three steps:
//  1. any NaN in `found` (or `expected`), or an inf on one side only, fails;
//  2. the normalised error sum((found - expected)^2) / sum(expected^2) must be <= tol.nmse;
//  3. every element must satisfy |found - expected| <= tol.atol + tol.rtol * |expected|.
// A failure reports the counts, the largest error and the first few offending elements (index, found, expected,
// tolerance). `shape`, when given, adds the multi-index of each element. Use as
// EXPECT_TRUE(all_close(found, expected, tol)).
inline ::testing::AssertionResult all_close(const std::vector<float>& found,
                                            const std::vector<float>& expected,
                                            const Tolerance& tol,
                                            const std::vector<int64_t>& shape = {}) {
    constexpr size_t kMaxReported = 8;
    if (found.size() != expected.size()) {
        return ::testing::AssertionFailure()
               << "size mismatch: found " << found.size() << " elements, expected " << expected.size();
    }
    std::ostringstream report;
    report << std::setprecision(9);

    size_t non_finite = 0;
    for (size_t i = 0; i < found.size(); ++i) {
        const float a = found[i];
        const float b = expected[i];
        const bool bad = std::isnan(a) || std::isnan(b) || ((std::isinf(a) || std::isinf(b)) && a != b);
        if (bad && ++non_finite <= kMaxReported) {
            report << "\n  index " << detail::format_index(i, shape) << ": found " << a << ", expected " << b;
        }
    }
    if (non_finite > 0) {
        return ::testing::AssertionFailure() << non_finite << " of " << found.size()
                                             << " elements are NaN or an inf on one side only" << report.str();
    }

    double squared_error = 0.0;
    double squared_reference = 0.0;
    double max_error = 0.0;
    size_t max_error_index = 0;
    size_t outside = 0;
    for (size_t i = 0; i < found.size(); ++i) {
        const double a = found[i];
        const double b = expected[i];
        if (std::isinf(b)) {
            continue;  // the same inf on both sides (checked above)
        }
        const double error = std::abs(a - b);
        const double limit = tol.atol + tol.rtol * std::abs(b);
        squared_error += error * error;
        squared_reference += b * b;
        if (error > max_error) {
            max_error = error;
            max_error_index = i;
        }
        if (error > limit && ++outside <= kMaxReported) {
            report << "\n  index " << detail::format_index(i, shape) << ": found " << a << ", expected " << b
                   << ", |diff| " << error << " > tolerance " << limit;
        }
    }
    const double nmse = squared_reference > 0.0 ? squared_error / squared_reference : squared_error;
    if (outside > 0 || nmse > tol.nmse) {
        return ::testing::AssertionFailure()
               << "nmse " << nmse << " (tolerance " << tol.nmse << "); " << outside << " of " << found.size()
               << " elements outside atol " << tol.atol << " + rtol " << tol.rtol << " * |expected|; largest |diff| "
               << max_error << " at index " << detail::format_index(max_error_index, shape) << report.str();
    }
    return ::testing::AssertionSuccess();
}

// Empty when a CUDA device is usable; otherwise the reason, for the skip message. Asked once per process.
inline const std::string& cuda_device_unavailable_reason() {
    static const std::string reason = [] {
#if VQA_WITH_CUDA
        int count = 0;
        const cudaError_t status = cudaGetDeviceCount(&count);
        if (status != cudaSuccess) {
            static_cast<void>(cudaGetLastError());
            return std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(status);
        }
        return count == 0 ? std::string("cudaGetDeviceCount returned 0") : std::string();
#else
        return std::string("built with VQA_ENABLE_CUDA=OFF");
#endif
    }();
    return reason;
}

// First statement of a test that needs a GPU.
#define VQA_SKIP_WITHOUT_CUDA_DEVICE()                                                  \
    do {                                                                                \
        const std::string& vqa_reason_ = ::vqa::test::cuda_device_unavailable_reason(); \
        if (!vqa_reason_.empty()) {                                                     \
            GTEST_SKIP() << "no CUDA device: " << vqa_reason_;                          \
        }                                                                               \
    } while (0)

#if VQA_WITH_CUDA

template <typename T>
struct DTypeTraits;
template <>
struct DTypeTraits<float> {
    static constexpr const char* kName = "fp32";
    static float from_float(float v) { return v; }
    static float to_float(float v) { return v; }
};
template <>
struct DTypeTraits<__half> {
    static constexpr const char* kName = "fp16";
    static __half from_float(float v) { return __float2half_rn(v); }
    static float to_float(__half v) { return __half2float(v); }
};
template <>
struct DTypeTraits<__nv_bfloat16> {
    static constexpr const char* kName = "bf16";
    static __nv_bfloat16 from_float(float v) { return __float2bfloat16_rn(v); }
    static float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
};

template <typename T>
std::vector<T> from_float(const std::vector<float>& values) {
    std::vector<T> out(values.size());
    std::transform(values.begin(), values.end(), out.begin(), DTypeTraits<T>::from_float);
    return out;
}

template <typename T>
std::vector<float> to_float(const std::vector<T>& values) {
    std::vector<float> out(values.size());
    std::transform(values.begin(), values.end(), out.begin(), DTypeTraits<T>::to_float);
    return out;
}

// The values as a T kernel sees them (rounded to nearest): the input to give the reference.
template <typename T>
std::vector<float> round_to(const std::vector<float>& values) {
    return to_float(from_float<T>(values));
}

// A CUDA stream owned by a test. Blocking (ordered with the legacy default stream) on purpose: DeviceBuffer's
// synchronous copies and memsets then never race with the op under test.
class CudaStream {
public:
    CudaStream() { VQA_CUDA_CHECK(cudaStreamCreate(&stream_)); }
    ~CudaStream() { VQA_CUDA_CHECK_NOTHROW(cudaStreamDestroy(stream_)); }
    CudaStream(const CudaStream&) = delete;
    CudaStream& operator=(const CudaStream&) = delete;

    cudaStream_t get() const { return stream_; }
    void synchronize() const { VQA_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

private:
    cudaStream_t stream_ = nullptr;
};

// A device array of `size` elements between two guard regions filled with a byte pattern: an op that writes out
// of bounds changes them, and check_guards() says where. `misalign_elems` shifts the array off the allocation's
// 256-byte alignment, to test the unaligned paths of vectorised kernels. Move-only. Every transfer and fill has
// finished on the device when it returns.
template <typename T>
class DeviceBuffer {
public:
    explicit DeviceBuffer(size_t size, size_t misalign_elems = 0)
        : size_(size), front_bytes_(kGuardBytes + misalign_elems * sizeof(T)) {
        VQA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&base_), total_bytes()));
        VQA_CUDA_CHECK(cudaMemset(base_, kGuardByte, total_bytes()));
        VQA_CUDA_CHECK(cudaDeviceSynchronize());
    }
    ~DeviceBuffer() {
        if (base_ != nullptr) {
            VQA_CUDA_CHECK_NOTHROW(cudaFree(base_));
        }
    }
    DeviceBuffer(DeviceBuffer&& other) noexcept
        : base_(std::exchange(other.base_, nullptr)), size_(other.size_), front_bytes_(other.front_bytes_) {}
    DeviceBuffer& operator=(DeviceBuffer&&) = delete;
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    T* data() const { return reinterpret_cast<T*>(base_ + front_bytes_); }
    size_t size() const { return size_; }

    void upload(const std::vector<T>& values) {
        EXPECT_EQ(values.size(), size_) << "DeviceBuffer::upload: size mismatch";
        VQA_CUDA_CHECK(
            cudaMemcpy(data(), values.data(), std::min(values.size(), size_) * sizeof(T), cudaMemcpyHostToDevice));
        VQA_CUDA_CHECK(cudaDeviceSynchronize());  // a pageable copy can return before its DMA has finished
    }
    std::vector<T> download() const {
        std::vector<T> values(size_);
        VQA_CUDA_CHECK(cudaMemcpy(values.data(), data(), size_ * sizeof(T), cudaMemcpyDeviceToHost));
        return values;
    }
    // All bits set: a NaN in fp32, fp16 and bf16 alike.
    void poison_nan() {
        VQA_CUDA_CHECK(cudaMemset(data(), 0xFF, size_ * sizeof(T)));
        VQA_CUDA_CHECK(cudaDeviceSynchronize());
    }

    ::testing::AssertionResult check_guards() const {
        std::vector<unsigned char> bytes(total_bytes());
        VQA_CUDA_CHECK(cudaMemcpy(bytes.data(), base_, bytes.size(), cudaMemcpyDeviceToHost));
        const size_t back = front_bytes_ + size_ * sizeof(T);
        for (size_t i = 0; i < bytes.size(); ++i) {
            if ((i < front_bytes_ || i >= back) && bytes[i] != kGuardByte) {
                const auto offset =
                    static_cast<int64_t>(i) - static_cast<int64_t>(i < front_bytes_ ? front_bytes_ : back);
                return ::testing::AssertionFailure()
                       << "guard byte overwritten " << (i < front_bytes_ ? "before" : "after")
                       << " the buffer, at byte " << offset << " from its " << (i < front_bytes_ ? "start" : "end");
            }
        }
        return ::testing::AssertionSuccess();
    }

private:
    static constexpr size_t kGuardBytes = 256;
    static constexpr unsigned char kGuardByte = 0xA5;

    size_t total_bytes() const { return front_bytes_ + size_ * sizeof(T) + kGuardBytes; }

    unsigned char* base_ = nullptr;
    size_t size_ = 0;
    size_t front_bytes_ = 0;
};

#endif  // VQA_WITH_CUDA

}  // namespace vqa::test

#include "engine/device.h"

#include <cstdio>

#include "engine/json_util.h"

#if VQA_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace vqa {

int cuda_device_count() noexcept {
#if VQA_WITH_CUDA
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no device" / "no driver" error
        return 0;
    }
    return count;
#else
    return 0;
#endif
}

Device select_backend(Device requested, Precision precision) {
    if (requested == Device::kCpu) {
        if (precision != Precision::kFp32) {
            throw_error(ErrorCode::kUnsupported, "precision fp16/bf16 needs the CUDA backend; the CPU backend is fp32");
        }
        return Device::kCpu;
    }
    if (cuda_device_count() > 0) {
        return Device::kCuda;
    }
    const char* missing = VQA_WITH_CUDA ? "no CUDA device is available" : "this build of libvqa has no CUDA support";
    if (requested == Device::kCuda) {
        throw_error(ErrorCode::kUnsupported, "device cuda: ", missing, " (use device auto or cpu)");
    }
    if (precision != Precision::kFp32) {
        throw_error(ErrorCode::kUnsupported, "precision fp16/bf16 needs the CUDA backend, but ", missing);
    }
    if (VQA_WITH_CUDA) {
        // A CUDA build on a machine without a usable device: say once per engine why the CPU runs the model.
        std::fprintf(stderr, "vqa: %s; running on the CPU backend\n", missing);
    }
    return Device::kCpu;
}

}  // namespace vqa

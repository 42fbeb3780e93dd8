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
    // The CUDA kernels are built and tested op by op; the model graph runs on the CPU backend in this version.
    const int devices = cuda_device_count();
    if (requested == Device::kCuda) {
        throw_error(ErrorCode::kUnsupported,
                    devices == 0 ? "device cuda: no CUDA device is available (use device auto or cpu)"
                                 : "device cuda: this version runs whole models on the CPU backend only");
    }
    if (precision != Precision::kFp32) {
        throw_error(ErrorCode::kUnsupported, "precision fp16/bf16 needs the CUDA backend; the CPU backend is fp32");
    }
    if (requested == Device::kAuto && devices > 0) {
        std::fprintf(stderr, "vqa: %d CUDA device(s) found, but this version runs models on the CPU backend\n",
                     devices);
    }
    return Device::kCpu;
}

}  // namespace vqa

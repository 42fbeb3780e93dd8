// NvtxRange: names a span of host code on the Nsight Systems timeline, in the NVTX domain "vqa".
//
//   { vqa::NvtxRange range("encode_image"); ... }
//
// NVTX3 is header-only and costs a branch when no profiler is attached; in a build without CUDA the class is
// empty and the range compiles to nothing.
#pragma once

#if VQA_WITH_CUDA
#include <nvtx3/nvToolsExt.h>
#endif

namespace vqa {

class NvtxRange {
public:
#if VQA_WITH_CUDA
    explicit NvtxRange(const char* name) noexcept {
        nvtxEventAttributes_t attributes{};
        attributes.version = NVTX_VERSION;
        attributes.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
        attributes.messageType = NVTX_MESSAGE_TYPE_ASCII;
        attributes.message.ascii = name;
        nvtxDomainRangePushEx(domain(), &attributes);
    }
    ~NvtxRange() {
        nvtxDomainRangePop(domain());
    }
#else
    explicit NvtxRange(const char* /*name*/) noexcept {}
#endif

    NvtxRange(const NvtxRange&) = delete;
    NvtxRange& operator=(const NvtxRange&) = delete;

private:
#if VQA_WITH_CUDA
    static nvtxDomainHandle_t domain() noexcept {
        static const nvtxDomainHandle_t handle = nvtxDomainCreateA("vqa");
        return handle;
    }
#endif
};

}  // namespace vqa

// libFuzzer target: safetensors files (engine/safetensors.h). SafetensorsFile reads only paths, so each input is
// written to one in-memory file of this process (memfd) and opened through /proc/self/fd. Every tensor that
// passes validation is then read back with each accessor: a header that validates must never let one read
// outside the mapping.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

#include "engine/safetensors.h"
#include "vqa/error.h"

namespace {

// The in-memory file, created on the first input; its contents are replaced by every input.
const std::string& memory_file_path() {
    static const std::string path = [] {
        const int fd = memfd_create("fuzz_safetensors", MFD_CLOEXEC);
        if (fd < 0) {
            std::perror("memfd_create");
            std::abort();
        }
        return "/proc/self/fd/" + std::to_string(fd);
    }();
    return path;
}

void write_input(const std::string& path, const uint8_t* data, std::size_t size) {
    FILE* f = std::fopen(path.c_str(), "wb");  // "w" truncates the memfd
    if (f == nullptr || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
        std::perror("fuzz_safetensors: writing the memfd");
        std::abort();
    }
}

void read_every_tensor(const vqa::SafetensorsFile& file) {
    for (const std::string& name : file.names()) {
        const vqa::TensorInfo& info = file.info(name);
        const vqa::ByteView raw = file.raw(name);
        if (raw.size != info.end - info.begin) {
            std::abort();
        }
        const std::vector<std::byte> copy(raw.data, raw.data + raw.size);  // reads every byte: past the mapping faults
        try {
            if (static_cast<int64_t>(file.to_float(name).size()) != info.numel) {
                std::abort();
            }
        } catch (const vqa::Error&) {  // an integer dtype
        }
        try {
            (void)file.as<int64_t>(name);
            (void)file.as<uint8_t>(name);
        } catch (const vqa::Error&) {  // a float dtype, or a value that does not fit
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    const std::string& path = memory_file_path();
    write_input(path, data, size);
    try {
        const vqa::SafetensorsFile file(path);
        read_every_tensor(file);
        (void)file.metadata();
    } catch (const vqa::Error&) {
        // Refusing a malformed file is the expected outcome; crashing, leaking or reading out of bounds is not.
    }
    return 0;
}

// Where the tools find the bundled model when no --model is given.
#pragma once

#include <cstdlib>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

namespace vqa::tools {

inline bool is_directory(const std::string& path) {
    struct stat st {};
    return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// In order: $VQA_MODEL_DIR; the installed copy (<prefix>/share/vqa/models/easy-vqa beside <prefix>/bin); the
// source tree's models/easy-vqa (builds run from the tree). The last candidate is returned even when missing,
// so that the loader's error names it.
inline std::string default_model_dir() {
    if (const char* env = std::getenv("VQA_MODEL_DIR"); env != nullptr && *env != '\0') {
        return env;
    }
    char exe[4096];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        std::string dir(exe, static_cast<std::size_t>(n));
        dir = dir.substr(0, dir.find_last_of('/'));
        const std::string installed = dir + "/../share/vqa/models/easy-vqa";
        if (is_directory(installed)) {
            return installed;
        }
    }
    return VQA_SOURCE_MODEL_DIR;
}

}  // namespace vqa::tools

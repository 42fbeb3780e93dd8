// libFuzzer target: the batch-file line parser of vqa_infer (tools/batch_line.h). The input is split into lines
// as vqa_infer reads them, so that ids repeated across lines are exercised too.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <sstream>
#include <string>

#include "tools/batch_line.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
    std::set<std::string> seen_ids;
    std::string text;
    int64_t number = 0;
    while (std::getline(in, text)) {
        ++number;
        const vqa::tools::BatchLine line = vqa::tools::parse_batch_line(text, number, "batch/dir", seen_ids);
        if (line.number != number) {
            std::abort();
        }
        (void)line.id.dump();  // every id must be printable in the output record
    }
    return 0;
}

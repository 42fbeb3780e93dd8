// Host allocation failure: this test program replaces the global operator new so that, on the calling thread, one
// chosen allocation (the n-th from now) or every allocation above a size throws std::bad_alloc. An answer() that
// meets one must report kOutOfMemory (in the Results of the questions concerned, or as a vqa::Error for the whole
// call), never let std::bad_alloc out, never crash or leak, and the engine must then answer the next call as
// before.
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "vqa/engine.h"

namespace {

// Armed per thread, so that OpenMP and OpenBLAS workers allocate as usual (an exception must not leave a
// parallel region anyway).
thread_local long t_fail_countdown = -1;    // the allocation at 0 fails; -1: off
thread_local std::size_t t_fail_above = 0;  // every allocation larger than this fails; 0: off
thread_local long t_failures = 0;           // allocations failed so far

void* allocate(std::size_t size) {
    if (t_fail_countdown >= 0 && t_fail_countdown-- == 0) {
        ++t_failures;
        throw std::bad_alloc();
    }
    if (t_fail_above > 0 && size > t_fail_above) {
        ++t_failures;
        throw std::bad_alloc();
    }
    if (void* p = std::malloc(size == 0 ? 1 : size)) {
        return p;
    }
    throw std::bad_alloc();
}

void* allocate_nothrow(std::size_t size) noexcept {
    try {
        return allocate(size);
    } catch (const std::bad_alloc&) {
        return nullptr;
    }
}

}  // namespace

// Every non-aligned form, so that each allocation is freed by the matching side (the aligned forms keep the
// library's own pair).
void* operator new(std::size_t size) {
    return allocate(size);
}
void* operator new[](std::size_t size) {
    return allocate(size);
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
    return allocate_nothrow(size);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
    return allocate_nothrow(size);
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete[](void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
    std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
    std::free(p);
}

namespace vqa {
namespace {

namespace fs = std::filesystem;

const fs::path kModel = fs::path(VQA_SOURCE_DIR) / "tests" / "goldens" / "cnn_lstm_mcan_softmax";

// Disarms on scope exit, so that a failed assertion does not leave the next allocations failing.
struct FailureInjection {
    static FailureInjection nth(long n) {
        FailureInjection f;
        t_fail_countdown = n;
        return f;
    }
    static FailureInjection above(std::size_t bytes) {
        FailureInjection f;
        t_fail_above = bytes;
        return f;
    }
    ~FailureInjection() {
        t_fail_countdown = -1;
        t_fail_above = 0;
    }
    // Allocations failed since the injection was armed.
    long failures() const { return t_failures - failures_before_; }

private:
    FailureInjection() : failures_before_(t_failures) {}
    long failures_before_;
};

Engine load_engine(int max_batch) {
    EngineOptions options;
    options.device = Device::kCpu;
    options.threads = 1;
    options.max_batch = max_batch;
    // Images are prepared on the calling thread, where the injection is armed; the workers' own handling of a
    // failed allocation is the same code (ImagePreparer::prepare), run there instead.
    options.decode_threads = 0;
    return Engine::load(kModel.string(), options);
}

std::vector<std::string> top_answers(const std::vector<Result>& results) {
    std::vector<std::string> out;
    for (const Result& r : results) {
        out.push_back(r.ok ? r.answers.at(0).text : std::string("error ") + error_code_name(r.error_code));
    }
    return out;
}

const std::vector<std::string> kQuestions = {"What color is the shape?", "Is there a RED circle?",
                                             "how many shapes are there", "Does the image contain a triangle"};

// Every allocation of one answer() call fails in turn (the 0th, the 1st, ... until the call needs no more).
TEST(OutOfMemoryTest, EachFailedAllocationOfACallIsReportedAndTheNextCallIsAnswered) {
    const Engine engine = load_engine(/*max_batch=*/2);
    const ImageInput image = ImageInput::file((kModel / "image0.png").string());
    const std::vector<std::string> expected = top_answers(engine.answer(image, kQuestions));
    long n = 0;
    for (;; ++n) {
        std::vector<Result> results;
        bool call_failed = false;
        bool injected = false;
        {
            const FailureInjection injection = FailureInjection::nth(n);
            try {
                results = engine.answer(image, kQuestions);
            } catch (const Error& e) {
                EXPECT_EQ(e.code(), ErrorCode::kOutOfMemory) << "allocation " << n << ": " << e.what();
                call_failed = true;
            } catch (const std::bad_alloc&) {
                ADD_FAILURE() << "allocation " << n << ": std::bad_alloc escaped Engine::answer";
                call_failed = true;
            }
            injected = injection.failures() > 0;
        }
        if (!injected) {
            ASSERT_FALSE(call_failed);
            EXPECT_EQ(top_answers(results), expected);
            break;  // the call made fewer than n + 1 allocations: every one has failed once
        }
        if (!call_failed) {
            ASSERT_EQ(results.size(), kQuestions.size());
            for (std::size_t q = 0; q < results.size(); ++q) {
                if (results[q].ok) {
                    EXPECT_EQ(results[q].answers.at(0).text, expected[q]) << "allocation " << n << ", question " << q;
                } else {
                    EXPECT_EQ(results[q].error_code, ErrorCode::kOutOfMemory)
                        << "allocation " << n << ", question " << q << ": " << results[q].error;
                }
            }
        }
        ASSERT_EQ(top_answers(engine.answer(image, kQuestions)), expected) << "after allocation " << n << " failed";
    }
    RecordProperty("allocations_failed_in_turn", static_cast<int>(n));
    EXPECT_GT(n, 50) << "the injection should have met the allocations of tokenizing, decoding and the forward pass";
}

// A forward pass too large for memory fails its questions alone; the same engine answers a smaller call.
TEST(OutOfMemoryTest, HugeBatchFailsWithOutOfMemoryThenASmallCallIsAnswered) {
    const Engine engine = load_engine(/*max_batch=*/4096);
    const ImageInput image = ImageInput::file((kModel / "image0.png").string());
    const std::vector<std::string> expected = top_answers(engine.answer(image, kQuestions));
    const std::vector<std::string> many(2000, kQuestions[0]);
    std::vector<Result> results;
    {
        // The call's own bookkeeping for 2000 questions is below 1 MiB, the activations of one forward pass of
        // 2000 are above (text tokens alone: 2000 x 10 x 16 floats); 4 questions need a few kilobytes.
        const FailureInjection injection = FailureInjection::above(std::size_t{1} << 20);
        results = engine.answer(image, many);
        EXPECT_GT(injection.failures(), 0);
    }
    ASSERT_EQ(results.size(), many.size());
    for (const Result& r : results) {
        ASSERT_FALSE(r.ok);
        ASSERT_EQ(r.error_code, ErrorCode::kOutOfMemory) << r.error;
        ASSERT_NE(r.error.find("max_batch"), std::string::npos) << r.error;
    }
    EXPECT_EQ(top_answers(engine.answer(image, kQuestions)), expected);
}

// An image too large for memory fails the questions about it alone.
TEST(OutOfMemoryTest, HugeImageFailsWithOutOfMemoryThenTheNextCallIsAnswered) {
    const Engine engine = load_engine(/*max_batch=*/64);
    const ImageInput small = ImageInput::file((kModel / "image0.png").string());
    const std::vector<std::string> expected = top_answers(engine.answer(small, kQuestions));
    const int side = 2048;  // 12 MiB of RGB
    const std::vector<ImageInput> images = {
        ImageInput::pixels(side, side, std::vector<uint8_t>(std::size_t{3} * side * side, 128)), small};
    const std::vector<Query> queries = {{0, kQuestions[0]}, {1, kQuestions[0]}};
    std::vector<Result> results;
    {
        const FailureInjection injection = FailureInjection::above(std::size_t{8} << 20);
        results = engine.answer(images, queries);
        EXPECT_GT(injection.failures(), 0);
    }
    ASSERT_EQ(results.size(), 2u);
    EXPECT_FALSE(results[0].ok);
    EXPECT_EQ(results[0].error_code, ErrorCode::kOutOfMemory) << results[0].error;
    ASSERT_TRUE(results[1].ok) << results[1].error;
    EXPECT_EQ(results[1].answers.at(0).text, expected[0]);
    EXPECT_EQ(top_answers(engine.answer(small, kQuestions)), expected);
}

}  // namespace
}  // namespace vqa

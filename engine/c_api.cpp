// The C API (include/vqa/vqa.h) over vqa::Engine: every exception stops here and becomes a status.
#include <new>
#include <string>

#include "vqa/engine.h"
#include "vqa/vqa.h"

struct vqa_engine {
    vqa::Engine engine;
};

struct vqa_result {
    vqa::Result result;
};

namespace {

thread_local std::string g_last_error;

vqa_status to_status(vqa::ErrorCode code) {
    switch (code) {
        case vqa::ErrorCode::kInvalidArgument:
            return VQA_ERROR_INVALID_ARGUMENT;
        case vqa::ErrorCode::kModelFormat:
            return VQA_ERROR_MODEL_FORMAT;
        case vqa::ErrorCode::kIo:
            return VQA_ERROR_IO;
        case vqa::ErrorCode::kImageDecode:
            return VQA_ERROR_IMAGE_DECODE;
        case vqa::ErrorCode::kUnsupported:
            return VQA_ERROR_UNSUPPORTED;
        case vqa::ErrorCode::kCuda:
            return VQA_ERROR_CUDA;
        case vqa::ErrorCode::kOutOfMemory:
            return VQA_ERROR_OUT_OF_MEMORY;
        case vqa::ErrorCode::kInternal:
            break;
    }
    return VQA_ERROR_INTERNAL;
}

vqa_status fail(vqa_status status, std::string message) {
    g_last_error = std::move(message);
    return status;
}

// Runs `body`, turning every exception into a status and a message.
template <typename Body>
vqa_status guarded(Body&& body) {
    try {
        g_last_error.clear();
        return body();
    } catch (const vqa::Error& e) {
        return fail(to_status(e.code()), e.what());
    } catch (const std::bad_alloc&) {
        return fail(VQA_ERROR_OUT_OF_MEMORY, "out of memory");
    } catch (const std::exception& e) {
        return fail(VQA_ERROR_INTERNAL, std::string("internal error: ") + e.what());
    } catch (...) {
        return fail(VQA_ERROR_INTERNAL, "internal error: unknown exception");
    }
}

vqa_status answer_one(
    const vqa_engine* engine, const vqa::ImageInput& image, const char* question, int top_k, vqa_result** result) {
    if (result == nullptr) {
        return fail(VQA_ERROR_INVALID_ARGUMENT, "result: expected a non-NULL pointer");
    }
    *result = nullptr;
    if (engine == nullptr || question == nullptr) {
        return fail(VQA_ERROR_INVALID_ARGUMENT, "engine and question must not be NULL");
    }
    return guarded([&] {
        vqa::AnswerOptions options;
        options.top_k = top_k;
        std::vector<vqa::Result> out = engine->engine.answer(image, {question}, options);
        if (!out[0].ok) {
            return fail(to_status(out[0].error_code), out[0].error);
        }
        *result = new vqa_result{std::move(out[0])};
        return VQA_OK;
    });
}

const vqa::Answer* answer_at(const vqa_result* result, int index) {
    if (result == nullptr || index < 0 || index >= static_cast<int>(result->result.answers.size())) {
        return nullptr;
    }
    return &result->result.answers[static_cast<std::size_t>(index)];
}

}  // namespace

extern "C" {

void vqa_options_init(vqa_options* options) {
    if (options != nullptr) {
        *options = vqa_options{VQA_DEVICE_AUTO, 0, 64};
    }
}

const char* vqa_last_error(void) {
    return g_last_error.c_str();
}

const char* vqa_status_name(vqa_status status) {
    switch (status) {
        case VQA_OK:
            return "ok";
        case VQA_ERROR_INVALID_ARGUMENT:
            return "invalid_argument";
        case VQA_ERROR_MODEL_FORMAT:
            return "model_format";
        case VQA_ERROR_IO:
            return "io";
        case VQA_ERROR_IMAGE_DECODE:
            return "image_decode";
        case VQA_ERROR_UNSUPPORTED:
            return "unsupported";
        case VQA_ERROR_CUDA:
            return "cuda";
        case VQA_ERROR_OUT_OF_MEMORY:
            return "out_of_memory";
        case VQA_ERROR_INTERNAL:
            return "internal";
    }
    return "unknown";
}

const char* vqa_version(void) {
    return vqa::version();
}

vqa_status vqa_engine_load(const char* model_dir, const vqa_options* options, vqa_engine** engine) {
    if (engine == nullptr) {
        return fail(VQA_ERROR_INVALID_ARGUMENT, "engine: expected a non-NULL pointer");
    }
    *engine = nullptr;
    if (model_dir == nullptr) {
        return fail(VQA_ERROR_INVALID_ARGUMENT, "model_dir must not be NULL");
    }
    return guarded([&] {
        vqa::EngineOptions opts;
        if (options != nullptr) {
            switch (options->device) {
                case VQA_DEVICE_AUTO:
                    opts.device = vqa::Device::kAuto;
                    break;
                case VQA_DEVICE_CPU:
                    opts.device = vqa::Device::kCpu;
                    break;
                case VQA_DEVICE_CUDA:
                    opts.device = vqa::Device::kCuda;
                    break;
                default:
                    return fail(VQA_ERROR_INVALID_ARGUMENT,
                                "options.device: expected VQA_DEVICE_AUTO, _CPU or _CUDA, got " +
                                    std::to_string(static_cast<int>(options->device)));
            }
            opts.threads = options->threads;
            opts.max_batch = options->max_batch;
        }
        *engine = new vqa_engine{vqa::Engine::load(model_dir, opts)};
        return VQA_OK;
    });
}

void vqa_engine_free(vqa_engine* engine) {
    delete engine;
}

int64_t vqa_engine_num_answers(const vqa_engine* engine) {
    return engine == nullptr ? 0 : engine->engine.info().num_answers;
}

vqa_status vqa_answer_file(
    const vqa_engine* engine, const char* image_path, const char* question, int top_k, vqa_result** result) {
    if (image_path == nullptr) {
        return fail(VQA_ERROR_INVALID_ARGUMENT, "image_path must not be NULL");
    }
    return answer_one(engine, vqa::ImageInput::file(image_path), question, top_k, result);
}

vqa_status vqa_answer_encoded(
    const vqa_engine* engine, const uint8_t* bytes, size_t size, const char* question, int top_k, vqa_result** result) {
    if (bytes == nullptr && size > 0) {
        return fail(VQA_ERROR_INVALID_ARGUMENT, "bytes must not be NULL");
    }
    std::vector<uint8_t> copy(bytes, bytes + size);
    return answer_one(engine, vqa::ImageInput::encoded(std::move(copy)), question, top_k, result);
}

vqa_status vqa_answer_pixels(const vqa_engine* engine,
                             const uint8_t* rgb,
                             int height,
                             int width,
                             const char* question,
                             int top_k,
                             vqa_result** result) {
    if (rgb == nullptr || height < 1 || width < 1) {
        return fail(VQA_ERROR_INVALID_ARGUMENT, "rgb must not be NULL and height, width must be >= 1");
    }
    std::vector<uint8_t> copy(rgb, rgb + static_cast<std::size_t>(height) * static_cast<std::size_t>(width) * 3);
    return answer_one(engine, vqa::ImageInput::pixels(height, width, std::move(copy)), question, top_k, result);
}

int vqa_result_count(const vqa_result* result) {
    return result == nullptr ? 0 : static_cast<int>(result->result.answers.size());
}

const char* vqa_result_answer(const vqa_result* result, int index) {
    const vqa::Answer* a = answer_at(result, index);
    return a == nullptr ? nullptr : a->text.c_str();
}

float vqa_result_score(const vqa_result* result, int index) {
    const vqa::Answer* a = answer_at(result, index);
    return a == nullptr ? 0.0f : a->score;
}

int64_t vqa_result_answer_id(const vqa_result* result, int index) {
    const vqa::Answer* a = answer_at(result, index);
    return a == nullptr ? -1 : a->id;
}

int vqa_result_warning_count(const vqa_result* result) {
    return result == nullptr ? 0 : static_cast<int>(result->result.warnings.size());
}

const char* vqa_result_warning(const vqa_result* result, int index) {
    if (result == nullptr || index < 0 || index >= static_cast<int>(result->result.warnings.size())) {
        return nullptr;
    }
    return result->result.warnings[static_cast<std::size_t>(index)].c_str();
}

void vqa_result_free(vqa_result* result) {
    delete result;
}

}  // extern "C"

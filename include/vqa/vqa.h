/* The C API of libvqa: opaque handles, status codes and a message per handle or per thread.
 *
 *   vqa_engine* engine = NULL;
 *   if (vqa_engine_load("models/easy-vqa", NULL, &engine) != VQA_OK) {
 *       fprintf(stderr, "%s\n", vqa_last_error());
 *   }
 *   vqa_result* result = NULL;
 *   vqa_answer_file(engine, "shape.png", "what color is the shape?", 3, &result);
 *   printf("%s %.3f\n", vqa_result_answer(result, 0), vqa_result_score(result, 0));
 *   vqa_result_free(result);
 *   vqa_engine_free(engine);
 *
 * Every function returns a vqa_status; on failure vqa_last_error() (per thread) holds a message naming what and
 * where. No function aborts or exits the process. An engine may be used from several threads at once.
 */
#ifndef VQA_VQA_H
#define VQA_VQA_H

#include <stddef.h>
#include <stdint.h>

#include "vqa/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vqa_status {
    VQA_OK = 0,
    VQA_ERROR_INVALID_ARGUMENT = 1,
    VQA_ERROR_MODEL_FORMAT = 2,
    VQA_ERROR_IO = 3,
    VQA_ERROR_IMAGE_DECODE = 4,
    VQA_ERROR_UNSUPPORTED = 5,
    VQA_ERROR_CUDA = 6,
    VQA_ERROR_OUT_OF_MEMORY = 7,
    VQA_ERROR_INTERNAL = 8
} vqa_status;

typedef enum vqa_device { VQA_DEVICE_AUTO = 0, VQA_DEVICE_CPU = 1, VQA_DEVICE_CUDA = 2 } vqa_device;

typedef struct vqa_options {
    vqa_device device; /* VQA_DEVICE_AUTO */
    int threads;       /* 0 = all cores */
    int max_batch;     /* 64 */
} vqa_options;

typedef struct vqa_engine vqa_engine;
typedef struct vqa_result vqa_result;

/* Fills `options` with the defaults. */
VQA_API void vqa_options_init(vqa_options* options);

/* The message of the last failed call on this thread ("" if none). Valid until the next call on this thread. */
VQA_API const char* vqa_last_error(void);
VQA_API const char* vqa_status_name(vqa_status status);
VQA_API const char* vqa_version(void);

/* Loads a model directory. `options` may be NULL for the defaults. */
VQA_API vqa_status vqa_engine_load(const char* model_dir, const vqa_options* options, vqa_engine** engine);
VQA_API void vqa_engine_free(vqa_engine* engine);
VQA_API int64_t vqa_engine_num_answers(const vqa_engine* engine);

/* Answers one question about an image file, an encoded image in memory, or decoded RGB pixels [height, width, 3].
 * A problem with the image or the question is returned as the status (and vqa_last_error()); *result is then
 * NULL. */
VQA_API vqa_status
vqa_answer_file(const vqa_engine* engine, const char* image_path, const char* question, int top_k, vqa_result** result);
VQA_API vqa_status vqa_answer_encoded(
    const vqa_engine* engine, const uint8_t* bytes, size_t size, const char* question, int top_k, vqa_result** result);
VQA_API vqa_status vqa_answer_pixels(const vqa_engine* engine,
                                     const uint8_t* rgb,
                                     int height,
                                     int width,
                                     const char* question,
                                     int top_k,
                                     vqa_result** result);

/* Answers: index 0 is the best. Out-of-range indices give NULL / 0. */
VQA_API int vqa_result_count(const vqa_result* result);
VQA_API const char* vqa_result_answer(const vqa_result* result, int index);
VQA_API float vqa_result_score(const vqa_result* result, int index);
VQA_API int64_t vqa_result_answer_id(const vqa_result* result, int index);
VQA_API int vqa_result_warning_count(const vqa_result* result);
VQA_API const char* vqa_result_warning(const vqa_result* result, int index);
VQA_API void vqa_result_free(vqa_result* result);

#ifdef __cplusplus
}
#endif

#endif /* VQA_VQA_H */

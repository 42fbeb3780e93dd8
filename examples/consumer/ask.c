/* ask_c MODEL_DIR IMAGE QUESTION: prints the top-3 answers (C API). */
#include <stdio.h>
#include <vqa/vqa.h>

int main(int argc, char** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL_DIR IMAGE QUESTION\n", argv[0]);
        return 2;
    }
    vqa_engine* engine = NULL;
    if (vqa_engine_load(argv[1], NULL, &engine) != VQA_OK) {
        fprintf(stderr, "error: %s\n", vqa_last_error());
        return 1;
    }
    vqa_result* result = NULL;
    vqa_status status = vqa_answer_file(engine, argv[2], argv[3], 3, &result);
    if (status != VQA_OK) {
        fprintf(stderr, "error (%s): %s\n", vqa_status_name(status), vqa_last_error());
        vqa_engine_free(engine);
        return 3;
    }
    for (int i = 0; i < vqa_result_count(result); ++i) {
        printf("%d. %s (%.3f)\n", i + 1, vqa_result_answer(result, i), vqa_result_score(result, i));
    }
    vqa_result_free(result);
    vqa_engine_free(engine);
    return 0;
}

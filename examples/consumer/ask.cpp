// ask MODEL_DIR IMAGE QUESTION...: prints the best answer to each question (C++ API).
#include <cstdio>
#include <string>
#include <vector>
#include <vqa/engine.h>

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s MODEL_DIR IMAGE QUESTION...\n", argv[0]);
        return 2;
    }
    try {
        const vqa::Engine engine = vqa::Engine::load(argv[1]);
        const std::vector<std::string> questions(argv + 3, argv + argc);
        const auto results = engine.answer(vqa::ImageInput::file(argv[2]), questions);
        int status = 0;
        for (std::size_t i = 0; i < results.size(); ++i) {
            if (results[i].ok) {
                std::printf("%s -> %s (%.3f)\n", questions[i].c_str(), results[i].answers[0].text.c_str(),
                            results[i].answers[0].score);
            } else {
                std::printf("%s -> error: %s\n", questions[i].c_str(), results[i].error.c_str());
                status = 3;
            }
        }
        return status;
    } catch (const vqa::Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}

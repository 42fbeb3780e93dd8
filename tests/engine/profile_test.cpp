// Profiling through the public API (AnswerOptions::profile, EngineOptions::profile) on a golden model: the stages
// of a call, nested and in order; nothing recorded for calls that were not asked, on this thread or another.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "vqa/engine.h"

namespace vqa {
namespace {

namespace fs = std::filesystem;

const fs::path kModel = fs::path(VQA_SOURCE_DIR) / "tests" / "goldens" / "cnn_lstm_mcan_softmax";

std::vector<std::string> golden_questions() {
    std::ifstream in(kModel / "questions.json");
    const auto all = nlohmann::json::parse(in).get<std::vector<std::string>>();
    return {all.at(0), all.at(1)};  // both about image0.png
}

ImageInput golden_image() {
    return ImageInput::file((kModel / "image0.png").string());
}

Engine load_cpu(int max_batch = 64, Profile* profile = nullptr) {
    EngineOptions options;
    options.device = Device::kCpu;
    options.max_batch = max_batch;
    options.profile = profile;
    return Engine::load(kModel.string(), options);
}

// Index of each range's parent (the nearest earlier range of its thread one level up), -1 for a call's root.
// Fails the test when a range has no parent, or does not lie within it.
std::vector<int> parents_of(const Profile& profile) {
    const std::vector<ProfileRange>& r = profile.ranges;
    std::vector<int> parent(r.size(), -1);
    for (std::size_t i = 0; i < r.size(); ++i) {
        EXPECT_GE(r[i].duration_us, 0.0) << r[i].name;
        if (r[i].depth == 0) {
            continue;
        }
        int p = static_cast<int>(i);
        while (--p >= 0) {
            if (r[p].thread == r[i].thread && r[p].device == r[i].device && r[p].depth == r[i].depth - 1) {
                break;
            }
        }
        EXPECT_GE(p, 0) << r[i].name << " (depth " << r[i].depth << ") has no parent";
        if (p < 0) {
            continue;
        }
        parent[i] = p;
        EXPECT_GE(r[i].start_us, r[p].start_us) << r[i].name << " starts before " << r[p].name;
        // Durations are differences of the same clock readings, rounded once each: allow a nanosecond.
        EXPECT_LE(r[i].start_us + r[i].duration_us, r[p].start_us + r[p].duration_us + 1e-3)
            << r[i].name << " ends after " << r[p].name;
    }
    return parent;
}

// (stage, parent stage) of one answer() call on the mcan golden (CNN trunk, LSTM, 2 + 2 fusion layers), in the
// order the stages begin.
const std::vector<std::pair<std::string, std::string>> kAnswerStages = {
    {"answer", ""},
    {"tokenize", "answer"},
    {"prepare_image", "answer"},
    {"decode", "prepare_image"},
    {"preprocess", "prepare_image"},
    {"forward", "answer"},
    {"image_encoder", "forward"},
    {"image.cnn", "image_encoder"},
    {"image.adapter", "image_encoder"},
    {"text_encoder", "forward"},
    {"text.embedding", "text_encoder"},
    {"text.lstm", "text_encoder"},
    {"fusion.text.0", "forward"},
    {"fusion.text.0.att", "fusion.text.0"},
    {"fusion.text.0.ffn", "fusion.text.0"},
    {"fusion.text.1", "forward"},
    {"fusion.text.1.att", "fusion.text.1"},
    {"fusion.text.1.ffn", "fusion.text.1"},
    {"fusion.image.0", "forward"},
    {"fusion.image.0.self_att", "fusion.image.0"},
    {"fusion.image.0.cross_att", "fusion.image.0"},
    {"fusion.image.0.ffn", "fusion.image.0"},
    {"fusion.image.1", "forward"},
    {"fusion.image.1.self_att", "fusion.image.1"},
    {"fusion.image.1.cross_att", "fusion.image.1"},
    {"fusion.image.1.ffn", "fusion.image.1"},
    {"pool.image", "forward"},
    {"pool.text", "forward"},
    {"head.norm", "forward"},
    {"head.classifier", "forward"},
    {"scoring", "answer"},
};

// The (name, parent name) of every range, in order.
std::vector<std::pair<std::string, std::string>> stage_tree(const Profile& profile) {
    const std::vector<int> parent = parents_of(profile);
    std::vector<std::pair<std::string, std::string>> tree;
    for (std::size_t i = 0; i < profile.ranges.size(); ++i) {
        tree.emplace_back(profile.ranges[i].name, parent[i] < 0 ? "" : profile.ranges[parent[i]].name);
    }
    return tree;
}

const ProfileRange& find(const Profile& profile, const std::string& name) {
    for (const ProfileRange& r : profile.ranges) {
        if (r.name == name) {
            return r;
        }
    }
    throw std::runtime_error("no range named " + name);
}

TEST(ProfileTest, AnswerRecordsEveryStageNestedAndInOrder) {
    const Engine engine = load_cpu();
    Profile profile;
    AnswerOptions options;
    options.profile = &profile;
    const std::vector<Result> results = engine.answer(golden_image(), golden_questions(), options);
    ASSERT_EQ(results.size(), 2u);
    ASSERT_TRUE(results[0].ok) << results[0].error;

    EXPECT_EQ(stage_tree(profile), kAnswerStages);
    for (const ProfileRange& r : profile.ranges) {
        EXPECT_FALSE(r.device) << r.name;  // the CPU backend
        EXPECT_EQ(r.thread, 0) << r.name;
    }
    // The model's stages run one after another: trunk, fusion, pooling, classifier.
    const char* order[] = {"image.cnn",      "text.lstm",  "fusion.text.0",
                           "fusion.image.1", "pool.image", "head.classifier"};
    for (std::size_t i = 1; i < std::size(order); ++i) {
        const ProfileRange& before = find(profile, order[i - 1]);
        const ProfileRange& after = find(profile, order[i]);
        EXPECT_LE(before.start_us + before.duration_us, after.start_us + 1e-3) << order[i - 1] << " / " << order[i];
    }
    EXPECT_GT(find(profile, "forward").duration_us, 0.0);
}

TEST(ProfileTest, ProfilingDoesNotChangeTheAnswers) {
    const Engine engine = load_cpu();
    Profile profile;
    AnswerOptions profiled;
    profiled.top_k = 3;
    profiled.profile = &profile;
    AnswerOptions plain;
    plain.top_k = 3;
    const auto a = engine.answer(golden_image(), golden_questions(), profiled);
    const auto b = engine.answer(golden_image(), golden_questions(), plain);
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t q = 0; q < a.size(); ++q) {
        ASSERT_EQ(a[q].answers.size(), b[q].answers.size());
        for (std::size_t k = 0; k < a[q].answers.size(); ++k) {
            EXPECT_EQ(a[q].answers[k].id, b[q].answers[k].id);
            EXPECT_EQ(a[q].answers[k].score, b[q].answers[k].score);
        }
    }
}

TEST(ProfileTest, CallsAppendAndUnprofiledCallsAddNothing) {
    const Engine engine = load_cpu();
    Profile profile;
    AnswerOptions options;
    options.profile = &profile;
    engine.answer(golden_image(), golden_questions(), options);
    const std::size_t one_call = profile.ranges.size();
    ASSERT_EQ(one_call, kAnswerStages.size());

    engine.answer(golden_image(), golden_questions());  // profile = null: records nothing, anywhere
    EXPECT_EQ(profile.ranges.size(), one_call);

    engine.answer(golden_image(), golden_questions(), options);
    ASSERT_EQ(profile.ranges.size(), 2 * one_call);
    const ProfileRange& first = profile.ranges.front();
    const ProfileRange& second = profile.ranges[one_call];
    EXPECT_EQ(second.name, "answer");
    EXPECT_EQ(second.depth, 0);
    EXPECT_GE(second.start_us, first.start_us + first.duration_us);  // one clock for every call
}

TEST(ProfileTest, ChunksOfOneCallAreSeparateForwardPasses) {
    const Engine engine = load_cpu(/*max_batch=*/1);
    Profile profile;
    AnswerOptions options;
    options.profile = &profile;
    engine.answer(golden_image(), golden_questions(), options);
    std::map<std::string, int> count;
    const std::vector<int> parent = parents_of(profile);
    for (std::size_t i = 0; i < profile.ranges.size(); ++i) {
        ++count[profile.ranges[i].name];
        if (profile.ranges[i].name == "forward") {
            EXPECT_EQ(profile.ranges[parent[i]].name, "answer");
        }
    }
    EXPECT_EQ(count["answer"], 1);
    EXPECT_EQ(count["forward"], 2);  // two questions, max_batch 1
    EXPECT_EQ(count["scoring"], 2);
    EXPECT_EQ(count["decode"], 1);  // the image is decoded once for both questions
}

TEST(ProfileTest, ConcurrentCallsRecordOnlyTheirOwnThread) {
    const Engine engine = load_cpu();
    Profile serial;
    AnswerOptions options;
    options.profile = &serial;
    engine.answer(golden_image(), golden_questions(), options);

    // While this thread answers with a profile, others answer without one, and one with a profile of its own.
    Profile mine;
    Profile theirs;
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 3; ++i) {
                engine.answer(golden_image(), golden_questions());
            }
        });
    }
    threads.emplace_back([&] {
        AnswerOptions own;
        own.profile = &theirs;
        engine.answer(golden_image(), golden_questions(), own);
    });
    options.profile = &mine;
    engine.answer(golden_image(), golden_questions(), options);
    for (std::thread& t : threads) {
        t.join();
    }
    EXPECT_EQ(stage_tree(mine), stage_tree(serial));
    EXPECT_EQ(stage_tree(theirs), stage_tree(serial));
    for (const ProfileRange& r : mine.ranges) {
        EXPECT_EQ(r.thread, 0) << r.name;
    }
}

TEST(ProfileTest, LoadRecordsItsStages) {
    Profile profile;
    const Engine engine = load_cpu(64, &profile);
    const std::vector<std::pair<std::string, std::string>> want = {
        {"load", ""}, {"read_model_dir", "load"}, {"prepare_weights", "load"}};
    EXPECT_EQ(stage_tree(profile), want);
    // The engine keeps no pointer to the profile: answering without one adds nothing.
    engine.answer(golden_image(), golden_questions());
    EXPECT_EQ(profile.ranges.size(), want.size());
}

TEST(ProfileTest, FailedCallAppendsNothing) {
    const Engine engine = load_cpu();
    Profile profile;
    AnswerOptions options;
    options.profile = &profile;
    options.top_k = 0;  // invalid: the call throws
    EXPECT_THROW(engine.answer(golden_image(), golden_questions(), options), Error);
    EXPECT_TRUE(profile.ranges.empty());
    // ... and leaves nothing installed on the thread: the next profiled call starts from depth 0.
    options.top_k = 1;
    engine.answer(golden_image(), golden_questions(), options);
    EXPECT_EQ(stage_tree(profile), kAnswerStages);
}

}  // namespace
}  // namespace vqa

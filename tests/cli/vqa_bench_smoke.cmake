# vqa_bench on a golden model: exits 0, prints valid JSON with the documented fields (docs/benchmarks.md), and
# --dump-inputs writes the questions it ran. Run by CTest with -DVQA_BENCH=<binary> -DMODEL=<dir> -DWORK=<dir>.
file(MAKE_DIRECTORY "${WORK}")
set(dump "${WORK}/vqa_bench_smoke_inputs.json")
file(REMOVE "${dump}")
execute_process(
  COMMAND "${VQA_BENCH}" --model "${MODEL}" --batch 1,3 --iters 2 --warmup 1 --json --from-features
          --dump-inputs "${dump}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "vqa_bench exited with ${rc}\n${out}\n${err}")
endif()

# json_get(<var> <json> <key>...): the value at the key path, or a failure naming the path.
function(json_get var json)
  string(JSON value ERROR_VARIABLE error GET "${json}" ${ARGN})
  if(error)
    message(FATAL_ERROR "vqa_bench JSON: ${ARGN}: ${error}\n${json}")
  endif()
  set(${var} "${value}" PARENT_SCOPE)
endfunction()

# json_length(<var> <json> <key>...): the length of the array at the key path.
function(json_length var json)
  string(JSON value ERROR_VARIABLE error LENGTH "${json}" ${ARGN})
  if(error)
    message(FATAL_ERROR "vqa_bench JSON: ${ARGN}: ${error}\n${json}")
  endif()
  set(${var} "${value}" PARENT_SCOPE)
endfunction()

# expect_positive(<json> <key>...): a number > 0.
function(expect_positive json)
  json_get(value "${json}" ${ARGN})
  if(NOT value MATCHES "^[0-9.eE+-]+$" OR value LESS_EQUAL 0)
    message(FATAL_ERROR "vqa_bench JSON: ${ARGN}: expected a number > 0, got '${value}'")
  endif()
endfunction()

json_get(tool "${out}" tool)
json_get(device "${out}" device)
json_length(count "${out}" results)
if(NOT tool STREQUAL "vqa_bench" OR NOT device MATCHES "^(cpu|cuda)$" OR NOT count EQUAL 2)
  message(FATAL_ERROR "vqa_bench JSON: expected tool vqa_bench, device cpu or cuda, 2 results; got ${tool}, "
                      "${device}, ${count}")
endif()
foreach(key version model/name model/parameters precision threads questions_per_image iters warmup max_batch env load_ms)
  string(REPLACE "/" ";" path "${key}")
  json_get(ignored "${out}" ${path})
endforeach()
expect_positive("${out}" peak_rss_mib)
set(expected_batches 1 3)
foreach(i RANGE 1)
  list(GET expected_batches ${i} expected)
  json_get(batch "${out}" results ${i} batch)
  json_get(images "${out}" results ${i} images)
  json_length(answers "${out}" results ${i} answers)
  expect_positive("${out}" results ${i} from_features_ms median)
  if(NOT batch EQUAL expected OR NOT images EQUAL 1 OR NOT answers EQUAL expected)
    message(FATAL_ERROR "vqa_bench JSON: results[${i}]: expected batch ${expected} on 1 image with ${expected} "
                        "answers, got batch ${batch}, ${images} images, ${answers} answers")
  endif()
  foreach(key median p90 mean min max)
    expect_positive("${out}" results ${i} latency_ms ${key})
  endforeach()
  expect_positive("${out}" results ${i} questions_per_s)
  expect_positive("${out}" results ${i} peak_rss_mib)
endforeach()

file(READ "${dump}" inputs)
json_get(format "${inputs}" format)
json_get(kind "${inputs}" image kind)
json_length(questions "${inputs}" batches 1 questions)
if(NOT format STREQUAL "vqa_bench-inputs/1" OR NOT kind STREQUAL "pixels" OR NOT questions EQUAL 3)
  message(FATAL_ERROR "--dump-inputs: expected format vqa_bench-inputs/1, pixels, 3 questions in batch 3; got "
                      "${format}, ${kind}, ${questions}")
endif()

# A regions model with a spread of region counts, packed and padded in one run: both modes' figures, their ratio,
# the same answers, and the counts in the dump.
get_filename_component(goldens "${MODEL}" DIRECTORY)
set(dump "${WORK}/vqa_bench_smoke_regions.json")
file(REMOVE "${dump}")
execute_process(
  COMMAND "${VQA_BENCH}" --model "${goldens}/regions_box_lstm_mcan_openvqa" --batch 1,6 --iters 2 --warmup 1
          --regions 2,5 --padding packed,padded --json --from-features --dump-inputs "${dump}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "vqa_bench --regions 2,5 --padding packed,padded exited with ${rc}\n${out}\n${err}")
endif()
json_get(first_mode "${out}" padding 0)
json_get(max_count "${out}" model image region_counts 1)
if(NOT first_mode STREQUAL "packed" OR NOT max_count EQUAL 5)
  message(FATAL_ERROR "vqa_bench JSON: expected padding [packed, ...] and region_counts [2, 5], got ${first_mode}, "
                      "max ${max_count}")
endif()
foreach(i RANGE 1)
  foreach(mode packed padded)
    expect_positive("${out}" results ${i} by_padding ${mode} latency_ms median)
    expect_positive("${out}" results ${i} by_padding ${mode} from_features_ms median)
  endforeach()
  expect_positive("${out}" results ${i} packing_gain latency)
  expect_positive("${out}" results ${i} packing_gain from_features)
  json_get(batch "${out}" results ${i} batch)
  json_get(same "${out}" results ${i} packing_gain same_top1)
  json_get(regions "${out}" results ${i} regions)
  if(NOT same EQUAL batch OR regions LESS 2 OR regions GREATER 10)
    message(FATAL_ERROR "vqa_bench JSON: results[${i}]: expected packed and padded to agree on all ${batch} answers "
                        "and 2..10 regions, got ${same} and ${regions}")
  endif()
endforeach()
file(READ "${dump}" inputs)
json_length(counts "${inputs}" batches 1 num_regions)
json_get(count "${inputs}" batches 1 num_regions 0)
if(NOT counts EQUAL 2 OR count LESS 2 OR count GREATER 5)
  message(FATAL_ERROR "--dump-inputs: expected 2 region counts in 2..5 in batch 6, got ${counts}, first ${count}")
endif()

# --regions outside 1..max_regions is a usage error (exit status 2).
execute_process(COMMAND "${VQA_BENCH}" --model "${goldens}/regions_box_lstm_mcan_openvqa" --regions 0,5
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 2 OR NOT err MATCHES "1 <= MIN <= MAX <= 6")
  message(FATAL_ERROR "vqa_bench --regions 0,5: expected exit status 2 and the valid range, got ${rc}: ${err}")
endif()

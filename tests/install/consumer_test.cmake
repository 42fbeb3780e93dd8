# Installs the build tree into a fresh prefix, builds examples/consumer against the installed package
# (find_package(vqa)), checks pkg-config's view of it, and asks the bundled model one question through both the
# C++ and the C API. Run by CTest with -DBUILD_DIR=... -DSOURCE_DIR=...
set(work "${BUILD_DIR}/consumer-test")
set(prefix "${work}/prefix")
file(REMOVE_RECURSE "${work}")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}")
foreach(f include/vqa/engine.h include/vqa/vqa.h lib/cmake/vqa/vqaConfig.cmake lib/pkgconfig/vqa.pc
          share/vqa/models/easy-vqa/config.json)
  if(NOT EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()
file(GLOB sonames "${prefix}/lib/libvqa.so.*")
if(NOT sonames)
  message(FATAL_ERROR "libvqa.so.<version> was not installed")
endif()

run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/examples/consumer" -B "${work}/build" -G Ninja
    "-DCMAKE_PREFIX_PATH=${prefix}" -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build "${work}/build")

set(model "${prefix}/share/vqa/models/easy-vqa")
set(image "${SOURCE_DIR}/examples/images/shape0.png")
run("${work}/build/ask" "${model}" "${image}" "what color is the shape?")
if(NOT last_output MATCHES "-> red")
  message(FATAL_ERROR "C++ consumer: expected the answer red, got: ${last_output}")
endif()
run("${work}/build/ask_c" "${model}" "${image}" "what is the red shape?")
if(NOT last_output MATCHES "1\\. triangle")
  message(FATAL_ERROR "C consumer: expected the answer triangle first, got: ${last_output}")
endif()
message(STATUS "consumer built against the installed package and answered: ${last_output}")

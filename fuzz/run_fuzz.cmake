# Builds fuzz/ with clang in BUILD_DIR and runs the fuzzer for SECONDS on the committed
# corpus (fuzz/corpus, read-only: new inputs go to BUILD_DIR/new-inputs, crashes to
# BUILD_DIR/crash-*). Run by CTest (tests/CMakeLists.txt) as:
#   cmake -DSOURCE_DIR=.../fuzz -DBUILD_DIR=... -DCXX=clang++ -DSECONDS=45 -P run_fuzz.cmake
foreach(v SOURCE_DIR BUILD_DIR SECONDS)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run_fuzz.cmake: -D${v}=... is required")
  endif()
endforeach()
if(NOT CXX)
  message(FATAL_ERROR "clang++ was not found; the fuzz test needs clang and libclang-rt-14-dev "
                      "(./build.sh setup installs them)")
endif()

set(_gen "")
if(GENERATOR)
  set(_gen -G ${GENERATOR})
endif()
if(NOT EXISTS ${BUILD_DIR}/CMakeCache.txt)
  execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${BUILD_DIR} ${_gen}
                          -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_BUILD_TYPE=RelWithDebInfo
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "configuring the fuzz target failed")
  endif()
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building the fuzz target failed")
endif()

file(REMOVE_RECURSE ${BUILD_DIR}/new-inputs)
file(MAKE_DIRECTORY ${BUILD_DIR}/new-inputs)
execute_process(
  COMMAND ${BUILD_DIR}/tensor_file_fuzzer -max_total_time=${SECONDS} -timeout=10
          -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1 -dict=${SOURCE_DIR}/tensor_files.dict
          -artifact_prefix=${BUILD_DIR}/ ${BUILD_DIR}/new-inputs ${SOURCE_DIR}/corpus
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the fuzzer found a problem (exit ${rc}); the input is saved as "
                      "${BUILD_DIR}/crash-* (or leak-*, oom-*, timeout-*): reproduce with "
                      "${BUILD_DIR}/tensor_file_fuzzer FILE")
endif()

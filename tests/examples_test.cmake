# CTest: the examples (examples/) built against an installed idiff, not its build tree,
# then run: train_steps writes a checkpoint, sample_grid samples a grid PNG from it.
#   cmake -DBUILD_DIR=... -DSOURCE_DIR=... -DWORK_DIR=... -DPREFIX_PATH=... -DGENERATOR=...
#         -DCXX=... -P examples_test.cmake
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
foreach(f include/idiff/idiff.h lib/cmake/idiff/idiffConfig.cmake bin/idiff)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "cmake --install did not install ${f}")
  endif()
endforeach()
# The search path through the environment (':'-separated): a ';' list would not survive
# being passed on as one argument.
string(REPLACE ";" ":" search "${prefix};${PREFIX_PATH}")
run(${CMAKE_COMMAND} -E env CMAKE_PREFIX_PATH=${search} ${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples
    -B ${WORK_DIR}/build -G ${GENERATOR} -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=${CXX})
# The package found is the installed one.
file(STRINGS ${WORK_DIR}/build/CMakeCache.txt idiff_dir REGEX "^idiff_DIR:")
if(NOT idiff_dir MATCHES "${prefix}/")
  message(FATAL_ERROR "the examples found idiff at ${idiff_dir}, not in ${prefix}")
endif()
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/train_steps ${WORK_DIR}/run 3)
foreach(f model000003.pt ema_0.99_000003.pt opt000003.pt progress.csv)
  if(NOT EXISTS ${WORK_DIR}/run/${f})
    message(FATAL_ERROR "train_steps wrote no ${f}")
  endif()
endforeach()
run(${WORK_DIR}/build/sample_grid ${WORK_DIR}/run/ema_0.99_000003.pt ${WORK_DIR}/grid.png)
file(READ ${WORK_DIR}/grid.png head LIMIT 8 HEX)
if(NOT head STREQUAL "89504e470d0a1a0a")
  message(FATAL_ERROR "sample_grid wrote no PNG (${WORK_DIR}/grid.png starts with ${head})")
endif()

# CTest: a build that a system LibTorch cannot break. Debian's libtorch-dev (python3-torch)
# puts torch 1.13's headers in /usr/include beside Gloo's; if /usr/include were named to
# the compiler, process_group_gloo.cpp would compile against them instead of the wheel's.
#   cmake -DSOURCE_DIR=... -DCOMPILE_COMMANDS=.../compile_commands.json -DWORK_DIR=... -P ...
# 1. The folder made for Gloo's headers (cmake/isolated_include.cmake), with a torch header
#    planted beside gloo/ where it was found, shows gloo/ and nothing else.
# 2. No compile command of this build names a system include folder (-I or -isystem
#    /usr/include, /usr/local/include): what the compiler searches there, it searches last.
include(${SOURCE_DIR}/cmake/isolated_include.cmake)
set(CMAKE_BINARY_DIR ${WORK_DIR})
set(planted ${WORK_DIR}/usr_include)
file(REMOVE_RECURSE ${WORK_DIR})
file(WRITE ${planted}/gloo/algorithm.h "// Gloo\n")
file(WRITE ${planted}/torch/csrc/distributed/c10d/Backend.hpp "#error torch 1.13's header\n")
idiff_isolated_include(dir ${planted} gloo)
file(GLOB entries RELATIVE ${dir} ${dir}/*)
if(NOT entries STREQUAL "gloo")
  message(FATAL_ERROR "the Gloo include folder ${dir} holds '${entries}', expected only gloo")
endif()
if(NOT EXISTS ${dir}/gloo/algorithm.h OR EXISTS ${dir}/torch)
  message(FATAL_ERROR "the Gloo include folder ${dir} does not show gloo/ alone")
endif()

file(READ ${COMPILE_COMMANDS} commands)
string(LENGTH "${commands}" n)
if(n LESS 1000)
  message(FATAL_ERROR "${COMPILE_COMMANDS} holds no compile commands")
endif()
string(REGEX MATCHALL "(-I|-isystem )/usr(/local)?/include/?[ \"]" bad "${commands}")
if(bad)
  message(FATAL_ERROR "a compile command names a system include folder: ${bad} "
                      "(a libtorch-dev in /usr/include would shadow the wheel's torch headers)")
endif()
file(REMOVE_RECURSE ${WORK_DIR})

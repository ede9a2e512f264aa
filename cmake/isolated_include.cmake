# idiff_isolated_include(<out_var> <found_dir> <entry>): a folder in the build tree that
# holds only <found_dir>/<entry> (a link), for headers a backend needs from a folder it
# shares with others. Debian keeps Gloo's headers (and a system NCCL's) in /usr/include,
# beside whatever else is there: libtorch-dev (pulled in by python3-torch) puts torch
# 1.13's headers there too, and naming that folder to the compiler (-I, searched before
# the wheel's -isystem folders) would compile the backend against the wrong torch.
# tests/system_headers_test.cmake checks it with a torch header planted beside Gloo's.
function(idiff_isolated_include out_var found_dir entry)
  string(MD5 key "${found_dir}")
  set(dir ${CMAKE_BINARY_DIR}/isolated_include/${entry}-${key})
  file(REMOVE_RECURSE ${dir})
  file(MAKE_DIRECTORY ${dir})
  file(CREATE_LINK ${found_dir}/${entry} ${dir}/${entry} SYMBOLIC)
  set(${out_var} ${dir} PARENT_SCOPE)
endfunction()

# Shared compile settings for every meshid target.

set(MESHID_WARNINGS -Wall -Wextra -Wpedantic -Werror -Wno-unused-parameter -Wno-missing-field-initializers)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  # GCC 12 gives false -Wrestrict and -Wmaybe-uninitialized positives inside libstdc++ string
  # code at -O3 and under ASan (aggregate temporaries holding std::string).
  list(APPEND MESHID_WARNINGS -Wno-restrict -Wno-maybe-uninitialized)
endif()

if(MESHID_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

# meshid_library(<name> SOURCES ... DEPS ...): one library per folder, warnings as errors.
function(meshid_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_compile_options(${name} PRIVATE ${MESHID_WARNINGS})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
endfunction()

# meshid_test(<name> SOURCES ... DEPS ...): a GoogleTest binary registered with ctest.
function(meshid_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_compile_options(${name} PRIVATE ${MESHID_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gmock GTest::gtest GTest::gtest_main)
  # Unit tests unless the caller names other labels; a list must reach set_tests_properties as
  # one escaped argument.
  if(ARG_LABELS)
    string(REPLACE ";" "\\;" labels "${ARG_LABELS}")
  else()
    set(labels unit)
  endif()
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS "${labels}")
endfunction()

# meshid_fuzzer(<name> SOURCES ... DEPS ... CORPUS dir): with MESHID_FUZZ a libFuzzer binary;
# otherwise a plain executable that replays the corpus, registered as a ctest regression test.
function(meshid_fuzzer name)
  cmake_parse_arguments(ARG "" "CORPUS" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_compile_options(${name} PRIVATE ${MESHID_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  if(MESHID_FUZZ)
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  else()
    target_sources(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests/fuzz/replay_main.cc)
    add_test(NAME fuzz_replay.${name} COMMAND ${name} ${ARG_CORPUS})
    set_tests_properties(fuzz_replay.${name} PROPERTIES LABELS "fuzz")
  endif()
endfunction()

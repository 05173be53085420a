# Shared build rules. Every source folder is one static library, meshid_<folder>, made by
# meshid_library(); docs/architecture.md says which folder may use which.

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

# The allowed arrows between folders: the table between the "layering" markers in
# docs/architecture.md, written there once. scripts/check-layering.py checks every #include
# against it; here every link between folders is checked against it at configure time.
set(MESHID_LAYERING_FILE ${PROJECT_SOURCE_DIR}/docs/architecture.md)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${MESHID_LAYERING_FILE})
file(STRINGS ${MESHID_LAYERING_FILE} layering_lines)
set(in_table FALSE)
foreach(line IN LISTS layering_lines)
  if(line MATCHES "<!-- layering -->")
    set(in_table TRUE)
  elseif(line MATCHES "<!-- /layering -->")
    set(in_table FALSE)
  elseif(in_table AND line MATCHES "^\\| `([a-z0-9_]+)/` \\|([^|]*)\\|")
    set(folder ${CMAKE_MATCH_1})
    string(REGEX MATCHALL "`[a-z0-9_]+/`" uses "${CMAKE_MATCH_2}")
    string(REGEX REPLACE "[`/]" "" uses "${uses}")
    set(MESHID_LAYERING_${folder} ${uses})
    list(APPEND MESHID_LAYERING_FOLDERS ${folder})
  endif()
endforeach()
if(NOT MESHID_LAYERING_FOLDERS)
  message(FATAL_ERROR "no layering table between <!-- layering --> markers in ${MESHID_LAYERING_FILE}")
endif()

# Fails the configuration when folder `from` links folder `to` against the table.
function(meshid_check_arrow from to)
  if(NOT from IN_LIST MESHID_LAYERING_FOLDERS)
    message(FATAL_ERROR "${from}/ is not in the layering table of ${MESHID_LAYERING_FILE}")
  endif()
  if(NOT to IN_LIST MESHID_LAYERING_${from})
    message(FATAL_ERROR "${from}/ may not use ${to}/ (the layering table in ${MESHID_LAYERING_FILE} "
                        "allows: ${MESHID_LAYERING_${from}})")
  endif()
endfunction()

# The include directory through which a folder's headers are reached as "<folder>/x.h": it
# holds one link, <folder>, to the source folder. Only targets that link meshid_<folder> see it.
function(meshid_include_dir folder source_dir out)
  set(dir ${PROJECT_BINARY_DIR}/include/${folder})
  if(NOT EXISTS ${dir}/${folder})
    file(MAKE_DIRECTORY ${dir})
    file(CREATE_LINK ${source_dir} ${dir}/${folder} SYMBOLIC)
  endif()
  set(${out} ${dir} PARENT_SCOPE)
endfunction()

# meshid_library(<folder> SOURCES ... [PUBLIC deps...] [PRIVATE deps...]): the folder's target
# meshid_<folder>. A dependency is PUBLIC only when the folder's headers include it.
function(meshid_library folder)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC;PRIVATE" ${ARGN})
  set(name meshid_${folder})
  add_library(${name} STATIC ${ARG_SOURCES})
  meshid_include_dir(${folder} ${CMAKE_CURRENT_SOURCE_DIR} include_dir)
  target_include_directories(${name} PUBLIC ${include_dir})
  target_compile_options(${name} PRIVATE ${MESHID_WARNINGS})
  target_link_libraries(${name} PUBLIC ${ARG_PUBLIC} PRIVATE ${ARG_PRIVATE})
  foreach(dep IN LISTS ARG_PUBLIC ARG_PRIVATE)
    if(dep MATCHES "^meshid_(.+)$")
      meshid_check_arrow(${folder} ${CMAKE_MATCH_1})
    endif()
  endforeach()
endfunction()

# meshid_test(<name> [SERIAL] SOURCES ... DEPS ... [LABELS ...]): a GoogleTest binary registered
# with ctest; SERIAL runs its tests alone (for the few that judge timing). Tests reach the shared
# test support and each other's helpers as "tests/...".
function(meshid_test name)
  cmake_parse_arguments(ARG "SERIAL" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_compile_options(${name} PRIVATE ${MESHID_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} meshid_test_support GTest::gmock GTest::gtest GTest::gtest_main)
  # Unit tests unless the caller names other labels; a list must reach set_tests_properties as
  # one escaped argument.
  if(ARG_LABELS)
    string(REPLACE ";" "\\;" labels "${ARG_LABELS}")
  else()
    set(labels unit)
  endif()
  set(serial FALSE)
  if(ARG_SERIAL)
    set(serial TRUE)
  endif()
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS "${labels}" RUN_SERIAL ${serial})
endfunction()

# meshid_fuzzer(<name> SOURCES ... DEPS ... CORPUS dir): with MESHID_FUZZ a libFuzzer binary;
# otherwise a plain executable that replays the corpus, registered as a ctest regression test.
# Fuzz targets reach their shared helpers as "tests/fuzz/..." (without the test support library,
# which a fuzzing build does not have).
function(meshid_fuzzer name)
  cmake_parse_arguments(ARG "" "CORPUS" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  meshid_include_dir(tests ${PROJECT_SOURCE_DIR}/tests tests_include_dir)
  target_include_directories(${name} PRIVATE ${tests_include_dir})
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

# Runs `meshid` with ARGS (a ^-separated list, since ctest splits ;-lists) in the source tree and compares stdout with GOLDEN, and the
# exit code with EXPECT_RC. With EXPECT_STDERR, stderr must contain that text instead of
# stdout being compared. MESHID_UPDATE_GOLDENS=1 in the environment rewrites the golden file.
string(REPLACE "^" ";" args "${ARGS}")
execute_process(
  COMMAND ${MESHID} ${args}
  WORKING_DIRECTORY ${SOURCE_DIR}
  OUTPUT_VARIABLE out
  ERROR_VARIABLE err
  RESULT_VARIABLE rc)
if(NOT rc STREQUAL EXPECT_RC)
  message(FATAL_ERROR "exit code ${rc}, expected ${EXPECT_RC}\nstdout:\n${out}\nstderr:\n${err}")
endif()
if(DEFINED EXPECT_STDERR)
  string(FIND "${err}" "${EXPECT_STDERR}" pos)
  if(pos EQUAL -1)
    message(FATAL_ERROR "stderr does not contain \"${EXPECT_STDERR}\":\n${err}")
  endif()
  return()
endif()
if(DEFINED ENV{MESHID_UPDATE_GOLDENS})
  file(WRITE ${GOLDEN} "${out}")
  return()
endif()
file(READ ${GOLDEN} want)
if(NOT out STREQUAL want)
  message(FATAL_ERROR "output differs from ${GOLDEN}\n--- got:\n${out}\n--- want:\n${want}")
endif()

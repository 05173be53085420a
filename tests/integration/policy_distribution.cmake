# Policy distribution (meshid apply/status, server → agent → proxy streams, the demo).
# Included by tests/integration/CMakeLists.txt.

# Unit tests of the versioning and the xDS state handling (they mirror authz/ and nodeagent/;
# registered here so that those folders' test lists stay their owners').
meshid_test(meshid_policy_distribution_test
  SOURCES
    ${PROJECT_SOURCE_DIR}/tests/authz/policy_distribution_xds_test.cc
    ${PROJECT_SOURCE_DIR}/tests/authz/policy_distribution_apply_test.cc
    ${PROJECT_SOURCE_DIR}/tests/authz/policy_distribution_service_test.cc
  DEPS meshid_authz meshid_sql)
target_compile_definitions(meshid_policy_distribution_test PRIVATE MESHID_SOURCE_DIR="${PROJECT_SOURCE_DIR}")

# End to end with the real binaries: server(s), agent, proxies, hello apps, meshid apply/status.
meshid_test(meshid_policy_integration_test
  SOURCES policy_distribution_test.cc
  DEPS meshid_ca meshid_nodeagent nlohmann_json::nlohmann_json
  LABELS integration)
target_compile_definitions(meshid_policy_integration_test PRIVATE
  MESHID_BINARY="$<TARGET_FILE:meshid>"
  PG_TEST_SERVER_SCRIPT="${PROJECT_SOURCE_DIR}/scripts/pg-test-server.sh")
add_dependencies(meshid_policy_integration_test meshid)

# The README's first command, as CI runs it: the whole mesh, the three outcomes, everything stopped.
add_test(NAME integration.policy_run_local
  COMMAND ${PROJECT_SOURCE_DIR}/scripts/run-local.sh --once --meshid $<TARGET_FILE:meshid>
          --dir ${CMAKE_CURRENT_BINARY_DIR}/policy_run_local)
set_tests_properties(integration.policy_run_local PROPERTIES LABELS "integration" TIMEOUT 300)

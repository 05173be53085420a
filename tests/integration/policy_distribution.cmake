# Policy distribution (meshid apply/status, server → agent → proxy streams, the demo).
# Included by tests/integration/CMakeLists.txt.

# Unit tests of the versioning and the xDS state handling (they mirror authz/ and nodeagent/;
# registered here so that those folders' test lists stay their owners').
meshid_test(meshid_policy_distribution_test
  SOURCES
    ${PROJECT_SOURCE_DIR}/tests/authz/policy_distribution_xds_test.cc
    ${PROJECT_SOURCE_DIR}/tests/authz/policy_distribution_apply_test.cc
  DEPS meshid_authz meshid_sql)
target_compile_definitions(meshid_policy_distribution_test PRIVATE MESHID_SOURCE_DIR="${PROJECT_SOURCE_DIR}")

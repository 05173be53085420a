# Policy parsers of untrusted input: the YAML loader and the `authz check` request parser.
meshid_fuzzer(fuzz_policy_yaml SOURCES ${CMAKE_CURRENT_LIST_DIR}/policy_yaml_fuzzer.cc DEPS meshid_authz
  CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/policy_yaml)
meshid_fuzzer(fuzz_policy_request SOURCES ${CMAKE_CURRENT_LIST_DIR}/policy_request_fuzzer.cc DEPS meshid_authz
  CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/policy_request)

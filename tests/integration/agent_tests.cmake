# The node agent's tests that run real binaries (included by tests/integration/CMakeLists.txt).

# Interop: Node's @grpc/grpc-js with Envoy's own protos from @grpc/grpc-js-xds (needs `node` and
# `npm ci` in tests/interop/node).
find_program(NODE_EXECUTABLE node)
if(NODE_EXECUTABLE)
  set(node_dir ${PROJECT_SOURCE_DIR}/tests/interop/node)
  add_test(NAME interop.sds_envoy_protos
    COMMAND ${NODE_EXECUTABLE} ${node_dir}/sds_proto_check.js --api-dir ${PROJECT_SOURCE_DIR}/api
    WORKING_DIRECTORY ${node_dir})
  add_test(NAME interop.sds_node_grpc_js
    COMMAND ${NODE_EXECUTABLE} ${node_dir}/sds_interop.js --meshid $<TARGET_FILE:meshid>
    WORKING_DIRECTORY ${node_dir})
  set_tests_properties(interop.sds_envoy_protos interop.sds_node_grpc_js PROPERTIES LABELS "interop" TIMEOUT 300)
endif()

# Integration, real meshid server + agent with Envoy's sds.proto: the agent through a CA outage,
# and a root rotation (the server restarted on a new root next to the old): ROOTCA with both
# roots reaches the proxy before any certificate from the new root.
if(NODE_EXECUTABLE)
  foreach(name agent_ca_outage agent_root_rotation)
    add_test(NAME integration.${name}
      COMMAND ${NODE_EXECUTABLE} ${node_dir}/${name}.js --meshid $<TARGET_FILE:meshid>
      WORKING_DIRECTORY ${node_dir})
    set_tests_properties(integration.${name} PROPERTIES LABELS "integration" TIMEOUT 300)
  endforeach()
endif()

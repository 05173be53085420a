# The sidecar's HTTP/1.1 parser (meshproxy/http.h): request heads, bodies and responses.
meshid_fuzzer(fuzz_meshproxy_http SOURCES ${CMAKE_CURRENT_LIST_DIR}/meshproxy_http_fuzzer.cc
  DEPS meshid_meshproxy_http CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/meshproxy_http)

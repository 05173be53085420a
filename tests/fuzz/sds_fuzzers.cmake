# SDS request handling (the node agent's xDS state machines fed with proxy-controlled bytes).
meshid_fuzzer(fuzz_sds_requests SOURCES sds_request_fuzzer.cc DEPS meshid_sds CORPUS ${corpus}/sds_requests)

# The policy stream: responses received by agents and proxies (snapshots, compiled as a proxy
# does), requests received by the server and agents, and agents' status reports.
meshid_fuzzer(fuzz_policy_stream SOURCES policy_stream_fuzzer.cc DEPS meshid_authz CORPUS ${corpus}/policy_stream)

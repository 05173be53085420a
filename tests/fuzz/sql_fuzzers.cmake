# Datastore URL parsing (`meshid server --datastore`, `meshid certs list --datastore`).
meshid_fuzzer(fuzz_sql_store_url SOURCES sql_store_url_fuzzer.cc DEPS meshid_sql CORPUS ${corpus}/sql_store_url)

-- The CA every replica on this database must use (store/ca_material_store.h): one row per kind,
-- written by the first server to start and compared by every later one. Only fingerprints: the
-- material itself stays in each server's files.
CREATE TABLE ca_material (
  kind           TEXT PRIMARY KEY,  -- 'signing-ca' | 'local-token-key'
  fingerprint    TEXT NOT NULL,     -- "sha256:<hex>" of each root (signing-ca) or of the public key
  source         TEXT NOT NULL,     -- where the recording server took it from
  recorded_at_us BIGINT NOT NULL
);

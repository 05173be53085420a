-- A staged CA rotation (`meshid ca rotate prepare|publish|activate|retire`;
-- store/ca_rotation_store.h): the single record of the newest rotation and how far it has gone,
-- which every server on this database follows. `meshid ca rotate` moves it one phase at a time
-- by a compare-and-swap on (rotation, phase). Unlike ca_material, the material itself is here
-- (certificates as PEM; the private key only by reference: a path every replica can read, or a
-- pkcs11: URI), so that every replica can switch to it.
CREATE TABLE ca_rotation (
  id                  INTEGER PRIMARY KEY CHECK (id = 1),  -- a single row
  rotation            BIGINT NOT NULL,  -- 1 for the first rotation on this database, then 2, 3, ...
  phase               TEXT NOT NULL,    -- 'prepared' | 'published' | 'active' | 'retired'
  kind                TEXT NOT NULL,    -- 'root' | 'intermediate'
  -- The material in force before the rotation; all four '' : each server's own files.
  from_ca_cert_pem    TEXT NOT NULL,
  from_cert_chain_pem TEXT NOT NULL,
  from_root_cert_pem  TEXT NOT NULL,
  from_key_ref        TEXT NOT NULL,
  -- The material in force after it.
  to_ca_cert_pem      TEXT NOT NULL,
  to_cert_chain_pem   TEXT NOT NULL,
  to_root_cert_pem    TEXT NOT NULL,
  to_key_ref          TEXT NOT NULL,
  actor               TEXT NOT NULL,    -- who moved it last (the operator's user name)
  forced              BIGINT NOT NULL,  -- 1: activated with --force although not every agent had adopted
  prepared_at_us      BIGINT NOT NULL,
  published_at_us     BIGINT,           -- NULL: that phase is not reached yet (and below)
  activated_at_us     BIGINT,
  retired_at_us       BIGINT
);

-- The roots each agent and proxy trusts, as the agents report them beside their policy state:
-- "sha256:<hex>" of each root (DER), sorted, comma-separated; '' not known (an older agent, or a
-- proxy that has not acknowledged a ROOTCA). `meshid ca rotate` reads it to tell whether every
-- agent has adopted the published trust bundle.
ALTER TABLE policy_status ADD COLUMN trust_bundle TEXT NOT NULL DEFAULT '';

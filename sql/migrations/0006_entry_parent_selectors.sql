-- Registration entries with a parent and selectors, and who minted a certificate.
--
-- An entry is now named by (spiffe_id, parent_id): parent_id '' is the direct entry (the
-- workload asks for itself, allowed_auth says how it authenticates); otherwise the SPIFFE ID of
-- the node agent that may mint the identity for the workloads on its node matching every
-- selector (a JSON array of canonical "unix:<key>:<value>" strings, sorted; store/records.h).
--
-- Neither backend can change a primary key in place in the same SQL (SQLite cannot at all), so
-- the table is rebuilt: copied aside, created anew under its own name (so that its constraint
-- and index names are those of a fresh database on PostgreSQL too), and filled back. Existing
-- entries become direct entries without selectors.

CREATE TABLE registry_entries_0005 AS SELECT * FROM registry_entries;
DROP TABLE registry_entries;

CREATE TABLE registry_entries (
  spiffe_id     TEXT NOT NULL,
  parent_id     TEXT NOT NULL DEFAULT '',    -- '' : direct entry; else the node agent's SPIFFE ID
  selectors     TEXT NOT NULL DEFAULT '[]',  -- JSON array: "unix:uid:1000", "unix:path:/usr/bin/envoy", ...
  allowed_auth  TEXT NOT NULL,               -- JSON array: "*", "jwt-sub:<sub>", "jwt-iss:<iss>", "client-cert"
  max_ttl_us    BIGINT NOT NULL,             -- 0: the server's maximum applies
  dns_names     TEXT NOT NULL,               -- JSON array of DNS SANs to add
  note          TEXT NOT NULL,
  created_at_us BIGINT NOT NULL,
  PRIMARY KEY (spiffe_id, parent_id)
);
INSERT INTO registry_entries (spiffe_id, parent_id, selectors, allowed_auth, max_ttl_us, dns_names, note,
                              created_at_us)
  SELECT spiffe_id, '', '[]', allowed_auth, max_ttl_us, dns_names, note, created_at_us FROM registry_entries_0005;
DROP TABLE registry_entries_0005;
-- A node agent's entries (`meshid entry list --parent`, the agent's view of its node).
CREATE INDEX registry_entries_parent_id ON registry_entries (parent_id);

-- The registry changed shape: a CA holding a status read before must read it again.
UPDATE registry_generation SET generation = generation + 1;

-- The node agent that asked for a certificate on the workload's behalf ('' : the workload asked
-- itself).
ALTER TABLE issuances ADD COLUMN minted_by TEXT NOT NULL DEFAULT '';

-- Policy distribution: versions of the policy set (`meshid apply`), the documents of each
-- version, and what every agent and proxy reported having applied (`meshid status`).
--
-- A version is the whole policy set. A document row holds one object's content for the range
-- of versions [first_version, last_version] in which it did not change (last_version NULL:
-- still current), so an apply that changes one object of ten thousand writes one row, and any
-- past version can be read back:
--   first_version <= V AND (last_version IS NULL OR last_version >= V)

CREATE TABLE policy_versions (
  version        BIGINT PRIMARY KEY,  -- 1, 2, 3, ... (the primary key serializes concurrent applies)
  created_at_us  BIGINT NOT NULL,
  created_by     TEXT NOT NULL,       -- user@host of `meshid apply`
  description    TEXT NOT NULL,       -- what the apply did, e.g. "2 created, 1 changed, 0 deleted"
  digest         TEXT NOT NULL,       -- lower-case hex SHA-256 over the documents
  document_count BIGINT NOT NULL
);

CREATE TABLE policy_documents (
  kind          TEXT NOT NULL,
  ns            TEXT NOT NULL,    -- '' for cluster-scoped kinds
  name          TEXT NOT NULL,
  first_version BIGINT NOT NULL,
  last_version  BIGINT,           -- NULL: part of the newest version
  yaml          TEXT NOT NULL,    -- one YAML document
  source        TEXT NOT NULL,    -- file:line it was applied from
  PRIMARY KEY (kind, ns, name, first_version)
);
CREATE INDEX policy_documents_range ON policy_documents (first_version, last_version);

-- One row per (agent, proxy); proxy_id '' is the agent's own stream to the server. An agent's
-- report replaces all of its rows.
CREATE TABLE policy_status (
  agent_id         TEXT NOT NULL,
  proxy_id         TEXT NOT NULL,
  reporter         TEXT NOT NULL,    -- the SPIFFE ID the agent authenticated as
  service          TEXT NOT NULL,
  ns               TEXT NOT NULL,
  applied_version  BIGINT NOT NULL,  -- 0: none yet
  rejected_version BIGINT NOT NULL,  -- the latest version NACKed (0: none)
  last_error       TEXT NOT NULL,    -- that NACK's message
  connected        BIGINT NOT NULL,  -- 1 or 0
  changed_at_us    BIGINT NOT NULL,  -- when the agent saw this state change
  reported_at_us   BIGINT NOT NULL,  -- when a server stored the report
  PRIMARY KEY (agent_id, proxy_id)
);

-- The issuance ledger, the identity registry and the deny list.
--
-- Plain SQL that both backends (SQLite, PostgreSQL) run unchanged. Conventions:
--   * times are BIGINT microseconds since the Unix epoch, UTC (columns named *_us);
--     PostgreSQL: to_timestamp(not_after_us / 1e6); SQLite: datetime(not_after_us / 1000000, 'unixepoch')
--   * lists are JSON arrays of strings in TEXT columns
--   * serials and fingerprints are hex strings
-- The migration runner (sql/migrations.cc) applies pending files in one transaction and records
-- each in meshid_schema_version.

CREATE TABLE issuances (
  serial            TEXT PRIMARY KEY,  -- upper-case hex serial of the issued certificate
  spiffe_id         TEXT NOT NULL,
  not_before_us     BIGINT NOT NULL,
  not_after_us      BIGINT NOT NULL,
  public_key_sha256 TEXT NOT NULL,     -- lower-case hex SHA-256 of the DER SubjectPublicKeyInfo
  issuer_serial     TEXT NOT NULL,     -- serial of the signing CA certificate
  auth_method       TEXT NOT NULL,     -- "jwt" or "client-cert"
  auth_detail       TEXT NOT NULL,     -- "iss=... sub=..." or "serial=..."
  issued_at_us      BIGINT NOT NULL
);
-- `meshid certs list --spiffe-id` (newest first), retention pruning, `meshid certs list`.
CREATE INDEX issuances_spiffe_id ON issuances (spiffe_id, issued_at_us);
CREATE INDEX issuances_not_after ON issuances (not_after_us);
CREATE INDEX issuances_issued_at ON issuances (issued_at_us);

CREATE TABLE registry_entries (
  spiffe_id     TEXT PRIMARY KEY,
  allowed_auth  TEXT NOT NULL,    -- JSON array: "*", "jwt-sub:<sub>", "jwt-iss:<iss>", "client-cert"
  max_ttl_us    BIGINT NOT NULL,  -- 0: the server's maximum applies
  dns_names     TEXT NOT NULL,    -- JSON array of DNS SANs to add
  note          TEXT NOT NULL,
  created_at_us BIGINT NOT NULL
);

CREATE TABLE blocked_identities (
  spiffe_id     TEXT PRIMARY KEY,
  reason        TEXT NOT NULL,
  blocked_at_us BIGINT NOT NULL
);

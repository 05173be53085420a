-- Revoked certificates and the CRL number.
--
-- A revocation names a certificate of the ledger (issuances) and copies what a CRL and an agent
-- need from it (identity, issuer, expiry), so that it outlives the ledger row's pruning until the
-- certificate expires; a CRL lists the rows whose not_after is still ahead. Revocation is
-- permanent: no statement of the store deletes a row before its certificate expired.
--
-- crl_number is one counter that every transaction revoking at least one certificate increments
-- (the store's Revoke, RevokeIdentity and BlockAndRevoke do; an edit by hand in SQL must do it
-- too). It is the CRL's cRLNumber, shared by every replica on the same database.

CREATE TABLE revocations (
  serial        TEXT PRIMARY KEY,  -- upper-case hex serial, as in issuances
  spiffe_id     TEXT NOT NULL,
  issuer_serial TEXT NOT NULL,     -- serial of the CA certificate that signed it: whose CRL lists it
  not_after_us  BIGINT NOT NULL,   -- the certificate's expiry: it leaves the CRL then
  reason        TEXT NOT NULL,     -- an RFC 5280 CRLReason name: keyCompromise, superseded, ...
  revoked_by    TEXT NOT NULL,     -- who revoked it, as the caller named itself (user@host)
  revoked_at_us BIGINT NOT NULL
);
CREATE INDEX revocations_not_after ON revocations (not_after_us);
CREATE INDEX revocations_spiffe_id ON revocations (spiffe_id);

CREATE TABLE crl_number (
  id     INTEGER PRIMARY KEY CHECK (id = 1),  -- a single row
  number BIGINT NOT NULL
);
INSERT INTO crl_number (id, number) VALUES (1, 1);

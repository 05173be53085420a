-- The identity registry's generation: one counter that every change to registry_entries or
-- blocked_identities increments in the same transaction (the store's CreateEntry, DeleteEntry,
-- Block and Unblock do; an edit by hand in SQL must do it too).
--
-- The CA signs with the registry status it last read and keeps in memory; the ledger insert of
-- the certificate names the generation that status was read at and writes nothing if the
-- generation has moved on since (Store::RecordIssuancesAt). A block on any replica is
-- therefore honoured by the next request everywhere without a registry read per request.

CREATE TABLE registry_generation (
  id         INTEGER PRIMARY KEY CHECK (id = 1),  -- a single row
  generation BIGINT NOT NULL
);
INSERT INTO registry_generation (id, generation) VALUES (1, 1);

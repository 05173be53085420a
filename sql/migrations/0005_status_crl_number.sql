-- Which CRL each agent and proxy enforces, as the agents report it beside their policy state
-- (`meshid status` shows it next to the server's current CRL number). 0: none, or not known
-- (a proxy that has not acknowledged a ROOTCA carrying a CRL).
ALTER TABLE policy_status ADD COLUMN crl_number BIGINT NOT NULL DEFAULT 0;

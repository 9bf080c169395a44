-- The customers whose features row each membership version wrote (refreshes, removals, a recompute's new
-- evaluations). A copy of a tenant's features held in memory as of version V is brought up to date by re-reading
-- only the customers logged after V. Every full recompute prunes the log; `log_pruned` is the last version it
-- removed, so a copy older than that reads the whole tenant again.
CREATE TABLE feature_log (
    tenant_id text COLLATE "C" NOT NULL,
    version   bigint   NOT NULL,
    customers bigint[] NOT NULL,
    PRIMARY KEY (tenant_id, version)
);
ALTER TABLE membership_versions ADD COLUMN log_pruned bigint NOT NULL DEFAULT 0;

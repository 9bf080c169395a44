-- Engagement events (app opens, product views, reviews…) of known customers, kept as one running total per customer:
-- rules read how many there were and when the last one was, never the events themselves. The consumer applies each
-- event once (its cursor commits with the totals).
CREATE TABLE engagement (
    tenant_id   text COLLATE "C" NOT NULL,
    customer_id bigint      NOT NULL,
    last_time   timestamptz NOT NULL,
    events      bigint      NOT NULL,
    PRIMARY KEY (tenant_id, customer_id)
);
ALTER TABLE features ADD COLUMN last_engagement_day date, ADD COLUMN engagements bigint NOT NULL DEFAULT 0;

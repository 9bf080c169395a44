-- Ingestion's tables. Every row carries tenant_id and every key starts with it, so the tables can be distributed by
-- tenant_id (Citus) without changing a query. Ids compare byte-wise (COLLATE "C"): they are codes, not words, and
-- locale-aware comparison would make every index lookup and insert several times slower.

CREATE SEQUENCE customer_id_seq;

-- One row per unified customer. A customer merged into another keeps its row, emptied, with merged_into pointing at
-- the survivor, so its old name still resolves.
CREATE TABLE customers (
    tenant_id   text COLLATE "C" NOT NULL,
    id          bigint      NOT NULL,
    given_name  text,
    family_name text,
    birth_date  date,
    postcode    text,
    country     text,
    merged_into bigint,
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX customers_merged_into ON customers (tenant_id, merged_into) WHERE merged_into IS NOT NULL;

-- Normalised identifiers; each belongs to exactly one customer. kind: 1 external, 2 email, 3 phone, 4 loyalty card,
-- 5 web account, 6 till (POS) customer, 7 partner ("namespace:value").
CREATE TABLE identifiers (
    tenant_id   text COLLATE "C" NOT NULL,
    kind        smallint    NOT NULL,
    value       text COLLATE "C" NOT NULL,
    customer_id bigint      NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, kind, value),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id)
);
CREATE INDEX identifiers_customer ON identifiers (tenant_id, customer_id);

-- Moves on whenever identifiers change owner (merges) or disappear (erasure); caches of identifier owners are valid
-- only under the epoch they were read in (see src/db/cache.rs).
CREATE TABLE identity_epochs (
    tenant_id text COLLATE "C" PRIMARY KEY,
    epoch     bigint NOT NULL
);

-- Merge history: merged_id was found to be the same person as survivor_id through (via_kind, via_value).
CREATE TABLE merges (
    tenant_id   text COLLATE "C" NOT NULL,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    survivor_id bigint      NOT NULL,
    merged_id   bigint      NOT NULL,
    via_kind    smallint    NOT NULL,
    via_value   text        NOT NULL,
    reason      text        NOT NULL,
    merge_time  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX merges_survivor ON merges (tenant_id, survivor_id);

-- Identifiers that were not attached (or merges that did not happen) because a single-valued kind would have held
-- two values. One row per (customer, identifier); a replay only bumps last_seen.
CREATE TABLE identity_conflicts (
    tenant_id         text COLLATE "C"        NOT NULL,
    id                bigint GENERATED ALWAYS AS IDENTITY,
    customer_id       bigint      NOT NULL,
    other_customer_id bigint,
    kind              smallint    NOT NULL,
    value             text COLLATE "C" NOT NULL,
    existing_value    text        NOT NULL,
    reason            text        NOT NULL,
    detect_time       timestamptz NOT NULL DEFAULT now(),
    last_seen         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, customer_id, kind, value)
);

-- Orders, idempotent on the retailer's order id. channel: 1 store, 2 web, 3 app. status: 1 paid, 2 partially paid,
-- 3 pending, 4 cancelled, 5 refunded. customer_id is the customer the order was resolved to when it arrived; after a
-- merge it still names the merged customer, whose row points at the survivor (customers.merged_into), and consumers
-- re-key from the customer.merged event. There is deliberately no index on customer_id and no foreign key: orders are
-- the bulk path, where either would cost a third of the insert, and only the rare erasure needs to find a customer's
-- orders (it scans the tenant's range of the primary key).
CREATE TABLE orders (
    tenant_id    text COLLATE "C"        NOT NULL,
    order_id     text COLLATE "C" NOT NULL,
    customer_id  bigint,
    channel      smallint    NOT NULL,
    store        text        NOT NULL,
    place_time   timestamptz NOT NULL,
    status       smallint    NOT NULL,
    amount_minor bigint      NOT NULL,
    currency     text        NOT NULL,
    -- Hash of the lines, so a re-sent order with different lines counts as a change.
    lines_hash   bigint      NOT NULL,
    create_time  timestamptz NOT NULL DEFAULT now(),
    update_time  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, order_id)
);

CREATE TABLE order_lines (
    tenant_id        text COLLATE "C"     NOT NULL,
    order_id         text COLLATE "C" NOT NULL,
    line_no          integer  NOT NULL,
    sku              text     NOT NULL,
    category         text     NOT NULL,
    quantity         integer  NOT NULL,
    unit_price_minor bigint   NOT NULL,
    PRIMARY KEY (tenant_id, order_id, line_no)
);

-- Spend at any merchant (card-linked feed), idempotent on the feed's transaction id.
CREATE TABLE market_transactions (
    tenant_id         text COLLATE "C"        NOT NULL,
    transaction_id    text COLLATE "C" NOT NULL,
    customer_id       bigint      NOT NULL,
    merchant_id       text        NOT NULL,
    merchant_name     text        NOT NULL,
    merchant_category text        NOT NULL,
    amount_minor      bigint      NOT NULL,
    currency          text        NOT NULL,
    occur_time        timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, transaction_id)
);
CREATE INDEX market_transactions_customer ON market_transactions (tenant_id, customer_id);

-- Engagement events, idempotent on the source's event id.
CREATE TABLE engagement_events (
    tenant_id   text COLLATE "C" NOT NULL,
    event_id    text COLLATE "C" NOT NULL,
    customer_id bigint      NOT NULL,
    type        smallint    NOT NULL,
    occur_time  timestamptz NOT NULL,
    source      text        NOT NULL,
    properties  jsonb       NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX engagement_events_customer ON engagement_events (tenant_id, customer_id);

-- Current consent per customer, channel (1 email, 2 sms, 3 push) and purpose (1 marketing, 2 transactional).
CREATE TABLE consents (
    tenant_id   text COLLATE "C" NOT NULL,
    customer_id bigint      NOT NULL,
    channel     smallint    NOT NULL,
    purpose     smallint    NOT NULL,
    granted     boolean     NOT NULL,
    change_time timestamptz NOT NULL,
    source      text        NOT NULL,
    PRIMARY KEY (tenant_id, customer_id, channel, purpose)
);

-- Every consent decision received; replays of the same decision are duplicates.
CREATE TABLE consent_history (
    tenant_id   text COLLATE "C" NOT NULL,
    customer_id bigint      NOT NULL,
    channel     smallint    NOT NULL,
    purpose     smallint    NOT NULL,
    change_time timestamptz NOT NULL,
    granted     boolean     NOT NULL,
    source      text        NOT NULL,
    record_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, customer_id, channel, purpose, change_time)
);

-- SHA-256 of (tenant, kind, value) of every identifier of an erased person; records carrying one are refused.
CREATE TABLE suppressions (
    tenant_id  text COLLATE "C"        NOT NULL,
    hash       bytea       NOT NULL,
    erase_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, hash)
);

-- Ids of erased customers (numbers only, no personal data), so erasure stays idempotent.
CREATE TABLE erasures (
    tenant_id   text COLLATE "C" NOT NULL,
    customer_id bigint      NOT NULL,
    erase_time  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, customer_id)
);

-- Segmentation's tables. Every row carries tenant_id and every key starts with it (Citus-ready). Segments are small
-- integers from the built-in catalogue (src/domain/segments.rs).

-- A tenant's scoring settings (the Settings message as JSON); absent means the documented defaults.
CREATE TABLE settings (
    tenant_id   text COLLATE "C" PRIMARY KEY,
    settings    jsonb       NOT NULL,
    update_time timestamptz NOT NULL DEFAULT now()
);

-- What segmentation keeps of ingestion's customers: the retailer's own id, for exports.
CREATE TABLE customers (
    tenant_id   text COLLATE "C" NOT NULL,
    customer_id bigint NOT NULL,
    external_id text,
    PRIMARY KEY (tenant_id, customer_id)
);

-- Orders of known customers, as ingestion last reported them. eligible: paid or partially paid.
CREATE TABLE orders (
    tenant_id    text COLLATE "C" NOT NULL,
    order_id     text COLLATE "C" NOT NULL,
    customer_id  bigint      NOT NULL,
    place_time   timestamptz NOT NULL,
    eligible     boolean     NOT NULL,
    amount_minor bigint      NOT NULL,
    channel      smallint    NOT NULL,
    PRIMARY KEY (tenant_id, order_id)
);
CREATE INDEX orders_customer ON orders (tenant_id, customer_id);

-- Market transactions (spend at any merchant) of known customers, for lifecycle states and share of wallet.
CREATE TABLE transactions (
    tenant_id      text COLLATE "C" NOT NULL,
    transaction_id text COLLATE "C" NOT NULL,
    customer_id    bigint      NOT NULL,
    merchant_id    text COLLATE "C" NOT NULL,
    category       text COLLATE "C" NOT NULL,
    amount_minor   bigint      NOT NULL,
    occur_time     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, transaction_id)
);
CREATE INDEX transactions_customer ON transactions (tenant_id, customer_id);

-- Each customer's scoring inputs, refreshed from its orders and transactions whenever they change or when due_date
-- comes (the first day its memberships can change with no new event), and the segments it is in (sorted), which
-- mirror the open rows of memberships.
CREATE TABLE features (
    tenant_id       text COLLATE "C" NOT NULL,
    customer_id     bigint   NOT NULL,
    frequency       integer  NOT NULL,
    monetary        bigint   NOT NULL,
    first_day       date,
    last_day        date,
    purchase_days   integer  NOT NULL,
    typical_gap     real,
    first_channel   smallint NOT NULL DEFAULT 0,
    category_day    date,
    tenant_recent   bigint   NOT NULL DEFAULT 0,
    all_recent      bigint   NOT NULL DEFAULT 0,
    tenant_before   bigint   NOT NULL DEFAULT 0,
    all_before      bigint   NOT NULL DEFAULT 0,
    share_due       date,
    segments        smallint[] NOT NULL DEFAULT '{}',
    due_date        date,
    PRIMARY KEY (tenant_id, customer_id)
);
CREATE INDEX features_due ON features (due_date) WHERE due_date IS NOT NULL;

-- Membership history: one row per stay of a customer in a segment. Open rows (exit_time NULL) are the current
-- memberships; "members as of D" are the rows with enter_time <= D < exit_time.
CREATE TABLE memberships (
    tenant_id    text COLLATE "C" NOT NULL,
    segment      smallint    NOT NULL,
    customer_id  bigint      NOT NULL,
    enter_time   timestamptz NOT NULL,
    enter_reason text        NOT NULL,
    exit_time    timestamptz,
    exit_reason  text,
    PRIMARY KEY (tenant_id, segment, customer_id, enter_time)
);
CREATE INDEX memberships_customer ON memberships (tenant_id, customer_id);

-- The RFM boundaries incremental updates score against, taken by the last full recompute.
CREATE TABLE rfm_boundaries (
    tenant_id    text COLLATE "C" PRIMARY KEY,
    population   bigint      NOT NULL,
    recency      integer[]   NOT NULL,
    frequency    integer[]   NOT NULL,
    monetary     bigint[]    NOT NULL,
    compute_time timestamptz NOT NULL
);

-- Moves on with every transaction that changes a tenant's memberships (and serialises them: the row is locked
-- until commit). The Redis cache records the version it reflects; any gap means it missed a change.
CREATE TABLE membership_versions (
    tenant_id text COLLATE "C" PRIMARY KEY,
    version   bigint NOT NULL
);

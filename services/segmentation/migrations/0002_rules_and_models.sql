-- Inputs of custom segment rules and predictions, the tenant's custom segments, K-means clusters and model fits.

-- Birth dates (for days_to_birthday) and each order's category (its largest line's, for first_order_category).
ALTER TABLE customers ADD COLUMN birth_date date;
ALTER TABLE orders ADD COLUMN category text COLLATE "C";

-- The current marketing consent of each customer per channel (ingestion's ConsentChannel: 1 email, 2 SMS, 3 push).
CREATE TABLE consents (
    tenant_id   text COLLATE "C" NOT NULL,
    customer_id bigint      NOT NULL,
    channel     smallint    NOT NULL,
    granted     boolean     NOT NULL,
    change_time timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, customer_id, channel)
);

-- first_day_spend: the part of monetary spent on the first purchase day (repeat spend is the rest, for
-- Gamma-Gamma). consent: granted marketing channels as bits (1 email, 2 SMS, 4 push).
ALTER TABLE features
    ADD COLUMN first_day_spend bigint   NOT NULL DEFAULT 0,
    ADD COLUMN first_category  text COLLATE "C",
    ADD COLUMN birth_date      date,
    ADD COLUMN consent         smallint NOT NULL DEFAULT 0;

-- A tenant's own segments: a rule over customer features (a CEL subset). Ids start at 1000 and are never reused,
-- so history rows of a deleted segment keep meaning what they meant; a slug may be reused after a delete.
CREATE TABLE custom_segments (
    tenant_id    text COLLATE "C" NOT NULL,
    segment      smallint    NOT NULL,
    slug         text COLLATE "C" NOT NULL,
    display_name text        NOT NULL,
    description  text        NOT NULL,
    rule         text        NOT NULL,
    create_time  timestamptz NOT NULL,
    update_time  timestamptz NOT NULL,
    delete_time  timestamptz,
    PRIMARY KEY (tenant_id, segment)
);
CREATE UNIQUE INDEX custom_segments_slug ON custom_segments (tenant_id, slug) WHERE delete_time IS NULL;

-- The K-means clustering the last full recompute found (centroids, normalisation, names), when the tenant has it on.
CREATE TABLE clusters (
    tenant_id    text COLLATE "C" PRIMARY KEY,
    model        jsonb       NOT NULL,
    compute_time timestamptz NOT NULL
);

-- The last fit of each prediction model ("bgnbd": r, alpha, a, b; "gamma_gamma": p, q, v).
CREATE TABLE model_fits (
    tenant_id      text COLLATE "C" NOT NULL,
    model          text        NOT NULL,
    params         float8[]    NOT NULL,
    log_likelihood float8      NOT NULL,
    customers      bigint      NOT NULL,
    iterations     integer     NOT NULL,
    fit_ms         integer     NOT NULL,
    fit_time       timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, model)
);

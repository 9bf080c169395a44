-- The transactional outbox of the service whose schema this is, and the cursors of its event consumers.

-- Writers insert events in the same transaction as the change they describe. `position` stays NULL until the
-- sequencer stamps the committed row; positions are therefore handed out in commit order, never at insert time.
CREATE TABLE outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    uuid        NOT NULL,
    tenant_id   text COLLATE "C" NOT NULL,
    event_type  text COLLATE "C" NOT NULL,
    -- The payload as an encoded google.protobuf.Any; stored uncompressed, because protobuf barely compresses and
    -- compressing a batch's payload costs more than writing it.
    payload     bytea       NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    position    bigint UNIQUE
);

-- Finds the rows still waiting for a position without scanning sequenced ones.
ALTER TABLE outbox ALTER COLUMN payload SET STORAGE EXTERNAL;

CREATE INDEX outbox_unsequenced ON outbox (id) WHERE position IS NULL;
-- Retention deletes old sequenced events.
CREATE INDEX outbox_create_time ON outbox (create_time) WHERE position IS NOT NULL;

-- One row: the last position handed out. Its row lock serialises sequencers across replicas.
CREATE TABLE outbox_sequencer (
    id            smallint PRIMARY KEY CHECK (id = 1),
    last_position bigint NOT NULL
);
INSERT INTO outbox_sequencer (id, last_position) VALUES (1, 0);

-- Where each consumer of another service's events has got to. Updated in the same transaction as the consumer's
-- effects, so effects and cursor never disagree.
CREATE TABLE event_cursors (
    consumer    text COLLATE "C" PRIMARY KEY,
    position    bigint      NOT NULL,
    update_time timestamptz NOT NULL DEFAULT now()
);

use boomerang_auth::TenantId;
use prost::Message;
use sqlx::PgConnection;

/// An event to publish: one change (or one batch of changes of one kind) of one tenant.
#[derive(Debug, Clone)]
pub struct NewEvent {
    tenant: String,
    event_type: &'static str,
    payload: Vec<u8>,
}

impl NewEvent {
    /// An event of `event_type` (for example `order.upserted`) carrying `payload`.
    pub fn new<M: prost::Name>(tenant: &TenantId, event_type: &'static str, payload: &M) -> Self {
        let any = prost_types::Any {
            type_url: M::type_url(),
            value: payload.encode_to_vec(),
        };
        Self {
            tenant: tenant.as_str().to_owned(),
            event_type,
            payload: any.encode_to_vec(),
        }
    }
}

/// The outbox of one service, living in the service's schema.
#[derive(Debug, Clone)]
pub struct Outbox {
    schema: &'static str,
}

impl Outbox {
    /// The outbox in `schema` (the service's schema, for example `ingestion`).
    pub fn new(schema: &'static str) -> Self {
        Self { schema }
    }

    pub(crate) fn schema(&self) -> &'static str {
        self.schema
    }

    /// Notified when a writer commits new events; wakes the sequencer.
    pub(crate) fn written_channel(&self) -> String {
        format!("{}_outbox_written", self.schema)
    }

    /// Notified with the new head position when the sequencer commits; wakes WatchEvents streams.
    pub(crate) fn sequenced_channel(&self) -> String {
        format!("{}_outbox_sequenced", self.schema)
    }

    /// Writes `events` into the outbox. Call it inside the transaction that makes the change, so the events exist
    /// if and only if the change committed.
    pub async fn publish(
        &self,
        conn: &mut PgConnection,
        events: Vec<NewEvent>,
    ) -> Result<(), sqlx::Error> {
        if events.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(events.len());
        let mut tenants = Vec::with_capacity(events.len());
        let mut types = Vec::with_capacity(events.len());
        let mut payloads = Vec::with_capacity(events.len());
        for event in events {
            // v7 ids sort by creation time, which keeps them friendly to indexes downstream.
            ids.push(uuid::Uuid::now_v7());
            tenants.push(event.tenant);
            types.push(event.event_type);
            payloads.push(event.payload);
        }
        // One round trip: the insert, and the notification Postgres delivers when (and only if) the transaction
        // commits.
        sqlx::query(
            "WITH written AS (
                 INSERT INTO outbox (event_id, tenant_id, event_type, payload)
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[])
                 RETURNING 1
             )
             SELECT pg_notify($5, '') FROM (SELECT count(*) FROM written) AS w",
        )
        .bind(&ids)
        .bind(&tenants)
        .bind(&types)
        .bind(&payloads)
        .bind(self.written_channel())
        .execute(conn)
        .await?;
        Ok(())
    }
}

//! Everything a tenant's evaluation depends on, read in one place: settings, RFM boundaries, clusters, model fits
//! and custom segments.

use sqlx::PgConnection;

use crate::db::{custom, models, settings};
use crate::domain::evaluate::{CustomSegment, Scoring};
use crate::domain::rules;

pub async fn load(conn: &mut PgConnection, tenant: &str) -> Result<Scoring, sqlx::Error> {
    let effective = settings::load(conn, tenant).await?;
    let boundaries = settings::boundaries(conn, tenant).await?.map(|(b, _)| b);
    // Clusters the tenant no longer asks for are ignored until the next recompute removes them.
    let clusters = settings::clusters(conn, tenant)
        .await?
        .filter(|c| c.centroids.len() == effective.settings.clusters as usize);
    let fits = models::all(conn, tenant).await?;
    let mut custom = Vec::new();
    let mut retired = Vec::new();
    for row in custom::all(conn, tenant).await? {
        if row.delete_time.is_some() {
            retired.push((row.segment, row.slug));
            continue;
        }
        match rules::compile_stored(&row.rule) {
            Ok(program) => custom.push(CustomSegment {
                id: row.segment,
                slug: row.slug,
                program,
            }),
            // Rules are checked when saved; one that no longer compiles (after a change of the language) matches
            // nobody rather than stopping the tenant's evaluation.
            Err(err) => {
                tracing::error!(%tenant, segment = %row.slug, error = %err, "stored rule does not compile");
                retired.push((row.segment, row.slug));
            }
        }
    }
    Ok(Scoring {
        settings: effective,
        boundaries,
        clusters,
        models: models::models(&fits),
        custom,
        retired,
    })
}

//! Segments as the API shows them (built-in, clusters, custom), and the custom segment handlers: create, update,
//! delete and preview.

use std::collections::BTreeMap;
use std::time::Instant;

use boomerang_auth::{Caller, TenantId};
use boomerang_proto::segmentation as pb;
use boomerang_service_kit::status::{FieldViolations, invalid_argument};
use boomerang_service_kit::time::to_timestamp;
use chrono::Utc;
use tonic::Status;

use super::{
    ApiError, READ, SegmentationApi, WRITE, child, customer_name, db, family_proto, segment_name,
    tenant_of,
};
use crate::db::custom::{self, CustomRow, Definition};
use crate::db::{memberships, scoring, settings as db_settings};
use crate::domain::evaluate::{self, Features, Scoring};
use crate::domain::rules::{self, Program};
use crate::domain::segments::{self, Family, SegmentId};
use crate::writer::CustomChange;

/// Largest preview sample.
const MAX_SAMPLE: i32 = 100;
const DEFAULT_SAMPLE: i32 = 10;
/// Prefixes of the built-in families, which custom ids may not take.
const RESERVED_PREFIXES: &[&str] = &["rfm-", "lifecycle-", "rupture-", "cluster-"];

fn custom_proto(tenant: &TenantId, row: &CustomRow, members: i64) -> pb::Segment {
    pb::Segment {
        name: segment_name(tenant, &row.slug),
        display_name: row.display_name.clone(),
        family: pb::SegmentFamily::Custom as i32,
        description: row.description.clone(),
        member_count: members,
        rule: row.rule.clone(),
        create_time: Some(to_timestamp(row.create_time)),
        update_time: Some(to_timestamp(row.update_time)),
    }
}

/// Checks a segment id for creation.
fn check_segment_id(id: &str, violations: &mut FieldViolations) {
    let well_formed = id.len() <= 63
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !well_formed {
        violations.add(
            "segment_id",
            "must be 1 to 63 lower-case letters, digits and dashes, starting with a letter and not ending with a dash",
        );
    } else if let Some(prefix) = RESERVED_PREFIXES.iter().find(|p| id.starts_with(**p)) {
        violations.add(
            "segment_id",
            format!("must not start with {prefix:?}, which built-in segments use"),
        );
    }
}

/// Checks a definition; the rule's errors carry line and column.
fn check_definition(definition: &Definition, violations: &mut FieldViolations) {
    if definition.display_name.chars().count() > 200 || definition.display_name.contains('\0') {
        violations.add(
            "segment.display_name",
            "must be at most 200 characters, without NUL characters",
        );
    }
    if definition.description.chars().count() > 2_000 || definition.description.contains('\0') {
        violations.add(
            "segment.description",
            "must be at most 2000 characters, without NUL characters",
        );
    }
    if let Err(err) = rules::compile(&definition.rule) {
        violations.add("segment.rule", err.to_string());
    }
}

impl SegmentationApi {
    /// Every segment of the tenant with its current size: the built-in ones, the clusters when the tenant has
    /// clustering on, and its live custom segments.
    pub(super) async fn all_segments(&self, tenant: &TenantId) -> Result<Vec<pb::Segment>, Status> {
        let mut conn = self.writer.pool.acquire().await.map_err(db)?;
        let t = tenant.as_str();
        let sizes: BTreeMap<SegmentId, i64> = memberships::current_sizes(&mut conn, t)
            .await
            .map_err(db)?
            .into_iter()
            .collect();
        let size = |id: SegmentId| sizes.get(&id).copied().unwrap_or(0);
        let mut out: Vec<pb::Segment> = segments::CATALOGUE
            .iter()
            .map(|def| pb::Segment {
                name: segment_name(tenant, def.slug),
                display_name: def.display_name.into(),
                family: family_proto(def.family) as i32,
                description: def.description.into(),
                member_count: size(def.id),
                ..Default::default()
            })
            .collect();
        let wanted = db_settings::load(&mut conn, t)
            .await
            .map_err(db)?
            .settings
            .clusters as usize;
        let clusters = db_settings::clusters(&mut conn, t).await.map_err(db)?;
        for i in 0..wanted {
            let id = segments::cluster_segment(i);
            let fitted = clusters.as_ref().filter(|c| c.centroids.len() == wanted);
            let (display_name, description) = match fitted {
                Some(c) => {
                    let [days, orders, spend] = c.centroid_values(i);
                    (
                        c.names[i].clone(),
                        format!(
                            "K-means cluster {} of {wanted}; centroid: last order {days:.0} days ago, {orders:.1} orders, {spend:.0} spent (minor units)",
                            i + 1
                        ),
                    )
                }
                None => (
                    format!("Cluster {}", i + 1),
                    "K-means cluster; found at the next recompute".to_owned(),
                ),
            };
            out.push(pb::Segment {
                name: segment_name(tenant, segments::CLUSTER_SLUGS[i]),
                display_name,
                family: pb::SegmentFamily::Cluster as i32,
                description,
                member_count: size(id),
                ..Default::default()
            });
        }
        for row in custom::all(&mut conn, t).await.map_err(db)? {
            if row.delete_time.is_none() {
                out.push(custom_proto(tenant, &row, size(row.segment)));
            }
        }
        Ok(out)
    }

    pub(super) async fn get_segment_impl(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<pb::Segment, Status> {
        let (tenant, slug) = child(caller, "name", name, "segments", READ)?;
        self.all_segments(&tenant)
            .await?
            .into_iter()
            .find(|s| s.name.rsplit('/').next() == Some(slug))
            .ok_or_else(|| ApiError::NotFound("no such segment").into())
    }

    pub(super) async fn create_segment_impl(
        &self,
        caller: &Caller,
        request: &pb::CreateSegmentRequest,
    ) -> Result<pb::Segment, Status> {
        let tenant = tenant_of(caller, "parent", &request.parent, WRITE)?;
        let mut violations = FieldViolations::new();
        check_segment_id(&request.segment_id, &mut violations);
        let Some(segment) = request.segment.as_ref() else {
            violations.add("segment", "is required");
            return Err(violations.into_status());
        };
        let definition = Definition {
            display_name: if segment.display_name.is_empty() {
                request.segment_id.clone()
            } else {
                segment.display_name.clone()
            },
            description: segment.description.clone(),
            rule: segment.rule.clone(),
        };
        check_definition(&definition, &mut violations);
        violations.check()?;
        self.change(
            &tenant,
            CustomChange::Create {
                slug: request.segment_id.clone(),
                definition,
            },
        )
        .await
    }

    pub(super) async fn update_segment_impl(
        &self,
        caller: &Caller,
        request: &pb::UpdateSegmentRequest,
    ) -> Result<pb::Segment, Status> {
        let Some(segment) = request.segment.as_ref() else {
            return Err(invalid_argument("segment", "is required"));
        };
        let (tenant, slug) = child(caller, "segment.name", &segment.name, "segments", WRITE)?;
        let mut violations = FieldViolations::new();
        let paths: Vec<&str> = request
            .update_mask
            .as_ref()
            .map(|m| m.paths.iter().map(String::as_str).collect())
            .unwrap_or_default();
        for path in &paths {
            if !["display_name", "description", "rule"].contains(path) {
                violations.add(
                    "update_mask",
                    format!(
                        "{path:?} cannot be changed; only display_name, description and rule can"
                    ),
                );
            }
        }
        if segments::fixed_id(slug).is_some() {
            violations.add("segment.name", "built-in segments cannot be changed");
        }
        violations.check()?;
        let mut conn = self.writer.pool.acquire().await.map_err(db)?;
        let current = custom::get(&mut conn, tenant.as_str(), slug)
            .await
            .map_err(db)?
            .ok_or(ApiError::NotFound("no such segment"))?;
        drop(conn);
        let wants = |field: &str| paths.is_empty() || paths.contains(&field);
        let definition = Definition {
            display_name: if wants("display_name") && !segment.display_name.is_empty() {
                segment.display_name.clone()
            } else {
                current.display_name
            },
            description: if wants("description") {
                segment.description.clone()
            } else {
                current.description
            },
            rule: if wants("rule") {
                segment.rule.clone()
            } else {
                current.rule
            },
        };
        let mut violations = FieldViolations::new();
        check_definition(&definition, &mut violations);
        violations.check()?;
        self.change(
            &tenant,
            CustomChange::Update {
                slug: slug.to_owned(),
                definition,
            },
        )
        .await
    }

    pub(super) async fn delete_segment_impl(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<(), Status> {
        let (tenant, slug) = child(caller, "name", name, "segments", WRITE)?;
        if segments::fixed_id(slug).is_some() {
            return Err(invalid_argument(
                "name",
                "built-in segments cannot be deleted",
            ));
        }
        self.change(
            &tenant,
            CustomChange::Delete {
                slug: slug.to_owned(),
            },
        )
        .await?;
        Ok(())
    }

    /// Applies a custom segment change through the writer (in a task of its own, so a caller that gives up does
    /// not abort the recompute halfway) and answers with the segment as it is now.
    async fn change(&self, tenant: &TenantId, change: CustomChange) -> Result<pb::Segment, Status> {
        let writer = self.writer.clone();
        let task_tenant = tenant.clone();
        let (row, _) =
            tokio::spawn(async move { writer.change_custom(&task_tenant, change).await })
                .await
                .map_err(|err| Status::internal(format!("segment change failed: {err}")))?
                .map_err(ApiError::from)?;
        self.catalogue.forget(tenant.as_str());
        let mut conn = self.writer.pool.acquire().await.map_err(db)?;
        let members = memberships::current_sizes(&mut conn, tenant.as_str())
            .await
            .map_err(db)?
            .into_iter()
            .find(|(id, _)| *id == row.segment)
            .map_or(0, |(_, n)| n);
        Ok(custom_proto(tenant, &row, members))
    }

    pub(super) async fn preview_segment_impl(
        &self,
        caller: &Caller,
        request: &pb::PreviewSegmentRequest,
    ) -> Result<pb::PreviewSegmentResponse, Status> {
        let tenant = tenant_of(caller, "parent", &request.parent, READ)?;
        let mut violations = FieldViolations::new();
        if !(0..=MAX_SAMPLE).contains(&request.sample_size) {
            violations.add("sample_size", format!("must be between 0 and {MAX_SAMPLE}"));
        }
        let program = match rules::compile(&request.rule) {
            Ok(program) => Some(program),
            Err(err) => {
                violations.add("rule", err.to_string());
                None
            }
        };
        violations.check()?;
        let program = program.expect("checked above");
        let sample_size = match request.sample_size {
            0 => DEFAULT_SAMPLE,
            n => n,
        } as usize;
        // One snapshot of the tenant: its scoring and every customer's features.
        let (mut tx, all) = self
            .writer
            .snapshot_population(tenant.as_str())
            .await
            .map_err(ApiError::from)?;
        let scoring = scoring::load(&mut tx, tenant.as_str()).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        let today = Utc::now().date_naive();
        let outcome = tokio::task::spawn_blocking(move || {
            preview(&all, today, &scoring, &program, sample_size)
        })
        .await
        .map_err(|err| Status::internal(format!("preview failed: {err}")))?;
        let ids: Vec<i64> = outcome.sample.iter().map(|(id, _)| *id).collect();
        let mut conn = self.writer.pool.acquire().await.map_err(db)?;
        let external: BTreeMap<i64, String> = sqlx::query_as(
            "SELECT customer_id, external_id FROM customers
             WHERE tenant_id = $1 AND customer_id = ANY($2) AND external_id IS NOT NULL",
        )
        .bind(tenant.as_str())
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?
        .into_iter()
        .collect();
        Ok(pb::PreviewSegmentResponse {
            matching_customers: outcome.matching as i64,
            evaluated_customers: outcome.evaluated as i64,
            undefined_customers: outcome.undefined as i64,
            sample: outcome
                .sample
                .into_iter()
                .map(|(id, reason)| pb::SegmentMember {
                    customer: customer_name(&tenant, id),
                    external_id: external.get(&id).cloned().unwrap_or_default(),
                    enter_time: None,
                    reason,
                })
                .collect(),
            evaluate_ms: outcome.evaluate_ms,
        })
    }
}

/// What a preview found.
struct Preview {
    matching: usize,
    evaluated: usize,
    undefined: usize,
    /// The first matching customers by id, with the values the rule names.
    sample: Vec<(i64, String)>,
    evaluate_ms: i64,
}

/// Evaluates `program` for every customer, over the cores. The built-in evaluation and the predictions are
/// computed only when the rule names them.
fn preview(
    all: &crate::population::Population,
    today: chrono::NaiveDate,
    scoring: &Scoring,
    program: &Program,
    sample_size: usize,
) -> Preview {
    let started = Instant::now();
    let parts: Vec<(Vec<&Features>, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = all
            .per_core()
            .into_iter()
            .map(|rows| {
                scope.spawn(move || {
                    let mut matching = Vec::new();
                    let mut undefined = 0;
                    for (features, _) in rows {
                        let evaluation = program
                            .needs_evaluation
                            .then(|| evaluate::evaluate(features, today, scoring));
                        let subject = evaluate::subject(
                            features,
                            evaluation.as_ref(),
                            today,
                            scoring,
                            program.needs_predictions,
                        );
                        match program.matches(&subject) {
                            Ok(true) => matching.push(features),
                            Ok(false) => {}
                            Err(_) => undefined += 1,
                        }
                    }
                    (matching, undefined)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("preview thread"))
            .collect()
    });
    let evaluate_ms = started.elapsed().as_millis() as i64;
    let undefined = parts.iter().map(|(_, u)| u).sum();
    let mut matching: Vec<&Features> = parts.into_iter().flat_map(|(m, _)| m).collect();
    let count = matching.len();
    matching.sort_unstable_by_key(|f| f.customer_id);
    let sample = matching
        .into_iter()
        .take(sample_size)
        .map(|features| {
            let evaluation = evaluate::evaluate(features, today, scoring);
            let subject = evaluate::subject(
                features,
                Some(&evaluation),
                today,
                scoring,
                program.needs_predictions,
            );
            (
                features.customer_id,
                format!("rule holds: {}", program.describe(&subject)),
            )
        })
        .collect();
    Preview {
        matching: count,
        evaluated: all.len(),
        undefined,
        sample,
        evaluate_ms,
    }
}

/// Whether a family's segments exclude each other (a transition matrix needs that).
pub(super) fn exclusive(family: Family) -> bool {
    family != Family::Custom
}

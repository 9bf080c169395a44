//! The gRPC API: authorization, request validation, and reads from the cache with Postgres behind it. Custom
//! segments (`custom.rs`) and predictions (`predictions.rs`) have their handlers beside this file; `convert.rs`
//! maps settings between the proto and the domain.

mod convert;
mod custom;
mod predictions;

use std::collections::BTreeMap;
use std::pin::Pin;

use boomerang_auth::{Caller, TenantId, caller};
use boomerang_events::EventFeed;
use boomerang_proto::events::{WatchEventsRequest, WatchEventsResponse};
use boomerang_proto::segmentation as pb;
use boomerang_proto::segmentation::segmentation_service_server::SegmentationService;
use boomerang_service_kit::status::{
    ErrorCode, FieldViolations, ServiceError, db_error_code, invalid_argument, to_status,
};
use boomerang_service_kit::time::{from_timestamp, to_timestamp};
use chrono::{DateTime, Datelike, Utc};
use futures::Stream;
use futures::future::BoxFuture;
use tonic::{Request, Response, Status};

use self::convert::{settings_from, settings_proto};
use crate::catalogue::Catalogue;
use crate::db::{memberships, scoring, settings as db_settings};
use crate::domain::segments::{self, Family, SegmentId};
use crate::predictions::FitJobError;
use crate::writer::{CustomError, RecomputeError, Writer};

/// Reading segments, memberships and scores.
pub const READ: &str = "segmentation.read";
/// Changing settings and starting recomputes.
pub const WRITE: &str = "segmentation.write";

/// Largest page of members.
const MAX_PAGE: i32 = 10_000;
const DEFAULT_PAGE: i32 = 1_000;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[derive(Clone)]
pub struct SegmentationApi {
    pub writer: Writer,
    pub feed: EventFeed,
    pub catalogue: Catalogue,
}

#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("recompute failed: {0}")]
    Recompute(#[from] RecomputeError),
    #[error("{0}")]
    Load(#[from] crate::db::features::LoadError),
    #[error("{0}")]
    Custom(#[from] CustomError),
    #[error("{0}")]
    Fit(#[from] FitJobError),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    FailedPrecondition(String),
}

impl ServiceError for ApiError {
    fn error_code(&self) -> ErrorCode {
        match self {
            ApiError::Database(err)
            | ApiError::Recompute(RecomputeError::Database(err))
            | ApiError::Custom(CustomError::Database(err))
            | ApiError::Custom(CustomError::Recompute(RecomputeError::Database(err)))
            | ApiError::Fit(FitJobError::Database(err)) => db_error_code(err),
            ApiError::Custom(CustomError::AlreadyExists) => ErrorCode::AlreadyExists,
            ApiError::Custom(CustomError::NotFound) | ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::Custom(CustomError::TooMany | CustomError::IdsUsedUp) => {
                ErrorCode::ResourceExhausted
            }
            ApiError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            ApiError::Recompute(_) | ApiError::Load(_) | ApiError::Custom(_) | ApiError::Fit(_) => {
                ErrorCode::Internal
            }
        }
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        to_status(&err)
    }
}

fn db(err: sqlx::Error) -> Status {
    ApiError::Database(err).into()
}

fn tenant_of(caller: &Caller, field: &str, parent: &str, scope: &str) -> Result<TenantId, Status> {
    let tenant =
        TenantId::from_parent(parent).map_err(|err| invalid_argument(field, err.to_string()))?;
    caller.authorize(&tenant, scope)?;
    Ok(tenant)
}

/// Parses `tenants/{tenant}/{collection}/{id}` in `field` and authorizes `scope` on the tenant.
fn child<'a>(
    caller: &Caller,
    field: &str,
    name: &'a str,
    collection: &str,
    scope: &str,
) -> Result<(TenantId, &'a str), Status> {
    let malformed = || {
        invalid_argument(
            field,
            format!("must have the form tenants/{{tenant}}/{collection}/{{id}}"),
        )
    };
    let (parent, id) = name
        .rsplit_once(&format!("/{collection}/"))
        .ok_or_else(malformed)?;
    let tenant = TenantId::from_parent(parent).map_err(|_| malformed())?;
    caller.authorize(&tenant, scope)?;
    if id.is_empty() || id.len() > 200 || id.contains('/') || id.chars().any(char::is_control) {
        return Err(malformed());
    }
    Ok((tenant, id))
}

fn customer_of(caller: &Caller, field: &str, name: &str) -> Result<(TenantId, i64), Status> {
    let (tenant, id) = child(caller, field, name, "customers", READ)?;
    let id = boomerang_auth::customer_number(id).ok_or_else(|| {
        invalid_argument(
            field,
            "the customer number must be written as the service writes it: digits, no sign or leading zeros",
        )
    })?;
    Ok((tenant, id))
}

/// One walk through a segment's members, page by page. Its page tokens name the last customer of the page and carry
/// a fingerprint of the walk (tenant, segment, as-of time), so a token is refused by any other walk: one for another
/// segment or time would silently skip members.
struct MembersWalk<'a> {
    tenant: &'a TenantId,
    segment: SegmentId,
    as_of: Option<DateTime<Utc>>,
}

impl MembersWalk<'_> {
    fn fingerprint(&self) -> String {
        use sha2::Digest;
        let as_of = self
            .as_of
            .map_or_else(|| "now".to_owned(), |t| t.timestamp_micros().to_string());
        let digest = sha2::Sha256::digest(format!(
            "members\0{}\0{}\0{as_of}",
            self.tenant.as_str(),
            self.segment
        ));
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn token(&self, after: i64) -> String {
        format!("{after}.{}", self.fingerprint())
    }

    /// The customer a token of this walk names, or `None` when it is not one.
    fn after(&self, token: &str) -> Option<i64> {
        let (after, fingerprint) = token.split_once('.')?;
        (fingerprint == self.fingerprint())
            .then(|| after.parse::<i64>().ok())
            .flatten()
            .filter(|id| *id > 0)
    }
}

fn segment_name(tenant: &TenantId, slug: &str) -> String {
    format!("{}/segments/{slug}", tenant.resource_name())
}

fn customer_name(tenant: &TenantId, customer: i64) -> String {
    format!("{}/customers/{customer}", tenant.resource_name())
}

fn time_field(
    field: &str,
    value: Option<&prost_types::Timestamp>,
) -> Result<Option<DateTime<Utc>>, Status> {
    value
        .map(|t| storable_time(t).map_err(|reason| invalid_argument(field, reason)))
        .transpose()
}

/// A time Postgres can compare with its own, or why not: within the years 1 to 9999 (Postgres stops at 4713 BC
/// and 294276 AD, chrono goes further, and nothing the service holds is outside these years).
fn storable_time(t: &prost_types::Timestamp) -> Result<DateTime<Utc>, &'static str> {
    match from_timestamp(t) {
        None => Err("is not a valid timestamp"),
        Some(time) if !(1..=9999).contains(&time.year()) => Err("must be in the years 1 to 9999"),
        Some(time) => Ok(time),
    }
}

fn family_of(family: i32) -> Option<Family> {
    match pb::SegmentFamily::try_from(family).ok()? {
        pb::SegmentFamily::RfmGroup => Some(Family::RfmGroup),
        pb::SegmentFamily::Lifecycle => Some(Family::Lifecycle),
        pb::SegmentFamily::Rupture => Some(Family::Rupture),
        pb::SegmentFamily::Cluster => Some(Family::Cluster),
        pb::SegmentFamily::Custom => Some(Family::Custom),
        pb::SegmentFamily::Unspecified => None,
    }
}

fn family_proto(family: Family) -> pb::SegmentFamily {
    match family {
        Family::RfmGroup => pb::SegmentFamily::RfmGroup,
        Family::Lifecycle => pb::SegmentFamily::Lifecycle,
        Family::Rupture => pb::SegmentFamily::Rupture,
        Family::Cluster => pb::SegmentFamily::Cluster,
        Family::Custom => pb::SegmentFamily::Custom,
    }
}

/// Every rule feature's value for the customer today ("none" when it has none): what a custom rule sees.
fn rule_values(
    features: &crate::domain::evaluate::Features,
    today: chrono::NaiveDate,
    scoring: &crate::domain::evaluate::Scoring,
) -> std::collections::HashMap<String, String> {
    let evaluation = crate::domain::evaluate::evaluate(features, today, scoring);
    let subject =
        crate::domain::evaluate::subject(features, Some(&evaluation), today, scoring, true);
    crate::domain::rules::FEATURES
        .iter()
        .map(|def| {
            let value = subject
                .value(def.feature)
                .map_or_else(|_| "none".to_owned(), |v| v.to_string());
            (def.name.to_owned(), value)
        })
        .collect()
}

impl SegmentationApi {
    /// Parses `tenants/{tenant}/segments/{segment}` in `field`, authorizes reading, and finds the segment.
    async fn segment(
        &self,
        caller: &Caller,
        field: &str,
        name: &str,
    ) -> Result<(TenantId, SegmentId, String), Status> {
        self.segment_at(caller, field, name, None).await
    }

    /// [`Self::segment`] as it was named at `at`: a custom segment deleted since, or whose name another took.
    async fn segment_at(
        &self,
        caller: &Caller,
        field: &str,
        name: &str,
        at: Option<DateTime<Utc>>,
    ) -> Result<(TenantId, SegmentId, String), Status> {
        let (tenant, slug) = child(caller, field, name, "segments", READ)?;
        if let Some(at) = at {
            let mut conn = self.writer.pool.acquire().await.map_err(db)?;
            if let Some(id) = crate::db::custom::live_at(&mut conn, tenant.as_str(), slug, at)
                .await
                .map_err(db)?
            {
                return Ok((tenant.clone(), id, slug.to_owned()));
            }
        }
        let id = self
            .catalogue
            .id(tenant.as_str(), slug)
            .await
            .map_err(db)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "segment {name:?} not found; ListSegments lists them"
                ))
            })?;
        Ok((tenant.clone(), id, slug.to_owned()))
    }

    /// Runs a recompute in a task of its own: a caller that gives up (or the request timeout) does not abort it
    /// halfway and waste the work; it still commits.
    async fn recompute_detached(
        &self,
        tenant: TenantId,
    ) -> Result<crate::writer::RecomputeStats, Status> {
        let writer = self.writer.clone();
        tokio::spawn(async move { writer.recompute_now(&tenant).await })
            .await
            .map_err(|err| ApiError::from(RecomputeError::Evaluation(err.to_string())))?
            .map_err(|err| ApiError::from(err).into())
    }

    /// Current segments of a customer: from the cache when it is complete, else from Postgres (and the cache is
    /// rebuilt).
    async fn current_segments(
        &self,
        tenant: &TenantId,
        customer: i64,
    ) -> Result<(Vec<SegmentId>, &'static str), Status> {
        match self
            .writer
            .cache
            .customer_segments(tenant.as_str(), customer)
            .await
        {
            Ok(Some(segments)) => return Ok((segments, "cache")),
            Ok(None) => self.writer.request_rebuild(tenant.as_str()),
            Err(err) => tracing::debug!(error = %err, "cache unavailable; reading Postgres"),
        }
        Ok((
            self.stored_segments(tenant, customer, None).await?,
            "postgres",
        ))
    }

    /// The customer's segments as Postgres records them, now or as of `at`. Boxed: the reads that the cache answers
    /// do not carry (and move) the state of a Postgres query with them.
    fn stored_segments<'a>(
        &'a self,
        tenant: &'a TenantId,
        customer: i64,
        at: Option<DateTime<Utc>>,
    ) -> BoxFuture<'a, Result<Vec<SegmentId>, Status>> {
        Box::pin(async move {
            let mut conn = self.writer.pool.acquire().await.map_err(db)?;
            memberships::segments_of(&mut conn, tenant.as_str(), customer, at)
                .await
                .map_err(db)
        })
    }
}

#[tonic::async_trait]
impl SegmentationService for SegmentationApi {
    async fn list_segments(
        &self,
        request: Request<pb::ListSegmentsRequest>,
    ) -> Result<Response<pb::ListSegmentsResponse>, Status> {
        let caller = caller(&request)?;
        let tenant = tenant_of(caller, "parent", &request.get_ref().parent, READ)?;
        Ok(Response::new(pb::ListSegmentsResponse {
            segments: self.all_segments(&tenant).await?,
        }))
    }

    async fn get_segment(
        &self,
        request: Request<pb::GetSegmentRequest>,
    ) -> Result<Response<pb::Segment>, Status> {
        let caller = caller(&request)?;
        Ok(Response::new(
            self.get_segment_impl(caller, &request.get_ref().name)
                .await?,
        ))
    }

    async fn create_segment(
        &self,
        request: Request<pb::CreateSegmentRequest>,
    ) -> Result<Response<pb::Segment>, Status> {
        let caller = caller(&request)?;
        Ok(Response::new(
            self.create_segment_impl(caller, request.get_ref()).await?,
        ))
    }

    async fn update_segment(
        &self,
        request: Request<pb::UpdateSegmentRequest>,
    ) -> Result<Response<pb::Segment>, Status> {
        let caller = caller(&request)?;
        Ok(Response::new(
            self.update_segment_impl(caller, request.get_ref()).await?,
        ))
    }

    async fn delete_segment(
        &self,
        request: Request<pb::DeleteSegmentRequest>,
    ) -> Result<Response<()>, Status> {
        let caller = caller(&request)?;
        self.delete_segment_impl(caller, &request.get_ref().name)
            .await?;
        Ok(Response::new(()))
    }

    async fn preview_segment(
        &self,
        request: Request<pb::PreviewSegmentRequest>,
    ) -> Result<Response<pb::PreviewSegmentResponse>, Status> {
        let caller = caller(&request)?;
        Ok(Response::new(
            self.preview_segment_impl(caller, request.get_ref()).await?,
        ))
    }

    async fn get_prediction_models(
        &self,
        request: Request<pb::GetPredictionModelsRequest>,
    ) -> Result<Response<pb::PredictionModels>, Status> {
        let caller = caller(&request)?;
        Ok(Response::new(
            self.get_models_impl(caller, &request.get_ref().parent)
                .await?,
        ))
    }

    async fn fit_prediction_models(
        &self,
        request: Request<pb::FitPredictionModelsRequest>,
    ) -> Result<Response<pb::PredictionModels>, Status> {
        let caller = caller(&request)?;
        Ok(Response::new(
            self.fit_models_impl(caller, &request.get_ref().parent)
                .await?,
        ))
    }

    async fn get_customer_predictions(
        &self,
        request: Request<pb::GetCustomerPredictionsRequest>,
    ) -> Result<Response<pb::CustomerPredictions>, Status> {
        let caller = caller(&request)?;
        Ok(Response::new(
            self.customer_predictions_impl(caller, &request.get_ref().customer)
                .await?,
        ))
    }

    async fn get_customer_segments(
        &self,
        request: Request<pb::GetCustomerSegmentsRequest>,
    ) -> Result<Response<pb::GetCustomerSegmentsResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.get_ref();
        let (tenant, customer) = customer_of(caller, "customer", &request.customer)?;
        let as_of = time_field("as_of_time", request.as_of_time.as_ref())?;
        let (segments, source) = match as_of {
            None => self.current_segments(&tenant, customer).await?,
            Some(at) => (
                self.stored_segments(&tenant, customer, Some(at)).await?,
                "postgres",
            ),
        };
        let slugs = self
            .catalogue
            .slugs(tenant.as_str(), &segments)
            .await
            .map_err(db)?;
        let mut names: Vec<String> = slugs.iter().map(|s| segment_name(&tenant, s)).collect();
        names.sort();
        Ok(Response::new(pb::GetCustomerSegmentsResponse {
            segments: names,
            source: source.into(),
        }))
    }

    async fn is_member(
        &self,
        request: Request<pb::IsMemberRequest>,
    ) -> Result<Response<pb::IsMemberResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.get_ref();
        let (tenant, segment, _) = self.segment(caller, "segment", &request.segment).await?;
        let (customer_tenant, customer) = customer_of(caller, "customer", &request.customer)?;
        if customer_tenant != tenant {
            return Err(invalid_argument(
                "customer",
                "must belong to the segment's tenant",
            ));
        }
        match self
            .writer
            .cache
            .is_member(tenant.as_str(), segment, customer)
            .await
        {
            Ok(Some(member)) => {
                return Ok(Response::new(pb::IsMemberResponse {
                    member,
                    source: "cache".into(),
                }));
            }
            Ok(None) => self.writer.request_rebuild(tenant.as_str()),
            Err(err) => tracing::debug!(error = %err, "cache unavailable; reading Postgres"),
        }
        let segments = self.stored_segments(&tenant, customer, None).await?;
        Ok(Response::new(pb::IsMemberResponse {
            member: segments.contains(&segment),
            source: "postgres".into(),
        }))
    }

    async fn list_segment_members(
        &self,
        request: Request<pb::ListSegmentMembersRequest>,
    ) -> Result<Response<pb::ListSegmentMembersResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.get_ref();
        let as_of = time_field("as_of_time", request.as_of_time.as_ref())?;
        let (tenant, segment, _) = self
            .segment_at(caller, "segment", &request.segment, as_of)
            .await?;
        let mut violations = FieldViolations::new();
        if !(0..=MAX_PAGE).contains(&request.page_size) {
            violations.add("page_size", format!("must be between 0 and {MAX_PAGE}"));
        }
        let walk = MembersWalk {
            tenant: &tenant,
            segment,
            as_of,
        };
        let after = if request.page_token.is_empty() {
            Some(0)
        } else {
            walk.after(&request.page_token)
        };
        if after.is_none() {
            violations.add(
                "page_token",
                "is not a token from a previous page of the same segment and as_of_time",
            );
        }
        violations.check()?;
        let limit = if request.page_size == 0 {
            DEFAULT_PAGE
        } else {
            request.page_size
        };
        let mut conn = self.writer.pool.acquire().await.map_err(db)?;
        let members = memberships::members(
            &mut conn,
            tenant.as_str(),
            segment,
            as_of,
            after.unwrap_or(0),
            i64::from(limit) + 1,
        )
        .await
        .map_err(db)?;
        let more = members.len() > limit as usize;
        let page: Vec<_> = members.into_iter().take(limit as usize).collect();
        let next_page_token = match (more, page.last()) {
            (true, Some(last)) => walk.token(last.customer_id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListSegmentMembersResponse {
            members: page
                .into_iter()
                .map(|m| pb::SegmentMember {
                    customer: customer_name(&tenant, m.customer_id),
                    external_id: m.external_id.unwrap_or_default(),
                    enter_time: Some(to_timestamp(m.enter_time)),
                    reason: m.enter_reason,
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn explain_customer(
        &self,
        request: Request<pb::ExplainCustomerRequest>,
    ) -> Result<Response<pb::ExplainCustomerResponse>, Status> {
        let caller = caller(&request)?;
        let (tenant, customer) = customer_of(caller, "customer", &request.get_ref().customer)?;
        let mut conn = self.writer.pool.acquire().await.map_err(db)?;
        let explained = crate::db::features::explain(&mut conn, tenant.as_str(), customer)
            .await
            .map_err(ApiError::from)?;
        let history = memberships::history(&mut conn, tenant.as_str(), customer)
            .await
            .map_err(db)?;
        let scoring = scoring::load(&mut conn, tenant.as_str())
            .await
            .map_err(db)?;
        let today = Utc::now().date_naive();
        let date = |d: Option<chrono::NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
        let basis_points = |part: i64, whole: i64| {
            if whole > 0 {
                (part * 10_000 / whole) as i32
            } else {
                -1
            }
        };
        let (features, next_change_time) = match explained {
            Some((f, stored)) => (
                Some(pb::CustomerFeatures {
                    frequency: f.frequency.into(),
                    monetary_minor: f.monetary,
                    recency_days: f.last_day.map_or(-1, |d| (today - d).num_days() as i32),
                    first_order_date: date(f.first_day),
                    last_order_date: date(f.last_day),
                    distinct_purchase_days: f.purchase_days as i32,
                    rfm: f
                        .rfm_values(today)
                        .zip(scoring.boundaries.as_ref())
                        .map_or(0, |(v, b)| b.score(v).code().into()),
                    share_recent_bp: basis_points(f.share.tenant_recent, f.share.all_recent),
                    share_before_bp: basis_points(f.share.tenant_before, f.share.all_before),
                    rule_values: rule_values(&f, today, &scoring),
                }),
                stored
                    .due
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| to_timestamp(t.and_utc())),
            ),
            None => (None, None),
        };
        let ids: Vec<SegmentId> = history.iter().map(|stay| stay.segment).collect();
        let slugs = self
            .catalogue
            .slugs(tenant.as_str(), &ids)
            .await
            .map_err(db)?;
        Ok(Response::new(pb::ExplainCustomerResponse {
            features,
            history: history
                .into_iter()
                .zip(slugs)
                .map(|(stay, slug)| pb::MembershipRecord {
                    segment: segment_name(&tenant, &slug),
                    enter_time: Some(to_timestamp(stay.enter_time)),
                    enter_reason: stay.enter_reason,
                    exit_time: stay.exit_time.map(to_timestamp),
                    exit_reason: stay.exit_reason.unwrap_or_default(),
                })
                .collect(),
            next_change_time,
        }))
    }

    async fn get_rfm_grid(
        &self,
        request: Request<pb::GetRfmGridRequest>,
    ) -> Result<Response<pb::GetRfmGridResponse>, Status> {
        let caller = caller(&request)?;
        let tenant = tenant_of(caller, "parent", &request.get_ref().parent, READ)?;
        let mut conn = self.writer.pool.acquire().await.map_err(db)?;
        let settings = db_settings::load(&mut conn, tenant.as_str())
            .await
            .map_err(db)?;
        let boundaries = db_settings::boundaries(&mut conn, tenant.as_str())
            .await
            .map_err(db)?;
        // Scored in one pass over the features with the current cuts, as Boundaries::score does.
        let cells: Vec<(i16, i64)> = match &boundaries {
            None => Vec::new(),
            Some((b, _)) => sqlx::query_as(
                "SELECT (100 * r + 10 * f + m)::int2, count(*) FROM (
                     SELECT 1 + (SELECT count(*) FROM unnest($3::int4[]) c WHERE $2::date - last_day < c) AS r,
                            1 + (SELECT count(*) FROM unnest($4::int4[]) c WHERE frequency > c) AS f,
                            1 + (SELECT count(*) FROM unnest($5::int8[]) c WHERE monetary > c) AS m
                     FROM features WHERE tenant_id = $1 AND frequency > 0) s
                 GROUP BY 1 ORDER BY 1",
            )
            .bind(tenant.as_str())
            .bind(Utc::now().date_naive())
            .bind(b.recency.map(|c| c as i32).to_vec())
            .bind(b.frequency.map(|c| c as i32).to_vec())
            .bind(b.monetary.to_vec())
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?,
        };
        let group_of = |code: i16| {
            let digit = |d: i16| (d % 10) as u8;
            let score = crate::domain::rfm::RfmScore {
                r: digit(code / 100),
                f: digit(code / 10),
                m: digit(code),
            };
            segments::fixed_slug(segments::group_segment(settings.mapping.group(score)))
                .unwrap_or_default()
                .to_owned()
        };
        let mut response = pb::GetRfmGridResponse {
            scored_customers: cells.iter().map(|(_, n)| n).sum(),
            cells: cells
                .iter()
                .map(|(rfm, customers)| pb::RfmCell {
                    rfm: (*rfm).into(),
                    customers: *customers,
                    group: group_of(*rfm),
                })
                .collect(),
            ..Default::default()
        };
        if let Some((b, at)) = boundaries {
            response.recency_cuts = b.recency.iter().map(|c| i64::from(*c)).collect();
            response.frequency_cuts = b.frequency.iter().map(|c| i64::from(*c)).collect();
            response.monetary_cuts = b.monetary.to_vec();
            response.compute_time = Some(to_timestamp(at));
        }
        Ok(Response::new(response))
    }

    async fn get_transition_matrix(
        &self,
        request: Request<pb::GetTransitionMatrixRequest>,
    ) -> Result<Response<pb::GetTransitionMatrixResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.get_ref();
        let tenant = tenant_of(caller, "parent", &request.parent, READ)?;
        let mut violations = FieldViolations::new();
        let family = family_of(request.family);
        match family {
            None => violations.add("family", "must be a segment family"),
            Some(f) if !custom::exclusive(f) => violations.add(
                "family",
                "custom segments overlap (a customer can be in several), so they have no transition matrix",
            ),
            Some(_) => {}
        }
        let mut required_time = |field: &str, value: Option<&prost_types::Timestamp>| match value {
            None => {
                violations.add(field, "is required");
                None
            }
            Some(t) => storable_time(t)
                .map_err(|reason| violations.add(field, reason))
                .ok(),
        };
        let from = required_time("from_time", request.from_time.as_ref());
        let to = required_time("to_time", request.to_time.as_ref());
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            violations.add("to_time", "must not be before from_time");
        }
        violations.check()?;
        let (Some(family), Some(from), Some(to)) = (family, from, to) else {
            unreachable!("checked above");
        };
        let mut conn = self.writer.pool.acquire().await.map_err(db)?;
        let rows = memberships::transitions(
            &mut conn,
            tenant.as_str(),
            &segments::family(family),
            from,
            to,
        )
        .await
        .map_err(db)?;
        let name = |s: SegmentId| {
            if s == 0 {
                String::new()
            } else {
                segment_name(&tenant, segments::fixed_slug(s).unwrap_or_default())
            }
        };
        Ok(Response::new(pb::GetTransitionMatrixResponse {
            transitions: rows
                .into_iter()
                .map(|(a, b, n)| pb::Transition {
                    from_segment: name(a),
                    to_segment: name(b),
                    customers: n,
                })
                .collect(),
        }))
    }

    async fn get_segment_sizes(
        &self,
        request: Request<pb::GetSegmentSizesRequest>,
    ) -> Result<Response<pb::GetSegmentSizesResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.get_ref();
        let tenant = tenant_of(caller, "parent", &request.parent, READ)?;
        let mut violations = FieldViolations::new();
        if request.times.is_empty() || request.times.len() > 366 {
            violations.add("times", "must hold 1 to 366 times");
        }
        let mut times = Vec::with_capacity(request.times.len());
        for (i, t) in request.times.iter().enumerate() {
            match storable_time(t) {
                // To the microsecond, as Postgres keeps them: the rows come back keyed by the stored time.
                Ok(t) => times.push(chrono::SubsecRound::trunc_subsecs(t, 6)),
                Err(reason) => violations.add(format!("times[{i}]"), reason),
            }
        }
        violations.check()?;
        let mut conn = self.writer.pool.acquire().await.map_err(db)?;
        let rows = memberships::sizes(&mut conn, tenant.as_str(), &times)
            .await
            .map_err(db)?;
        let mut by_time: BTreeMap<DateTime<Utc>, pb::SegmentSizes> = times
            .iter()
            .map(|t| {
                (
                    *t,
                    pb::SegmentSizes {
                        time: Some(to_timestamp(*t)),
                        sizes: Default::default(),
                    },
                )
            })
            .collect();
        let ids: Vec<SegmentId> = rows.iter().map(|(_, segment, _)| *segment).collect();
        let slugs = self
            .catalogue
            .slugs(tenant.as_str(), &ids)
            .await
            .map_err(db)?;
        for ((at, _, count), slug) in rows.into_iter().zip(slugs) {
            if let Some(entry) = by_time.get_mut(&at) {
                entry.sizes.insert(segment_name(&tenant, &slug), count);
            }
        }
        Ok(Response::new(pb::GetSegmentSizesResponse {
            sizes: times
                .iter()
                .filter_map(|t| by_time.get(t).cloned())
                .collect(),
        }))
    }

    async fn recompute(
        &self,
        request: Request<pb::RecomputeRequest>,
    ) -> Result<Response<pb::RecomputeResponse>, Status> {
        let caller = caller(&request)?;
        let tenant = tenant_of(caller, "parent", &request.get_ref().parent, WRITE)?;
        let started = std::time::Instant::now();
        let stats = self.recompute_detached(tenant).await?;
        Ok(Response::new(pb::RecomputeResponse {
            scored_customers: stats.scored as i64,
            customers_evaluated: stats.evaluated as i64,
            memberships_entered: stats.entered as i64,
            memberships_exited: stats.exited as i64,
            duration_ms: started.elapsed().as_millis() as i64,
            load_ms: stats.load.as_millis() as i64,
            evaluate_ms: stats.evaluate.as_millis() as i64,
            write_ms: stats.write.as_millis() as i64,
            cache_ms: stats.cache.as_millis() as i64,
            wait_ms: stats.wait.as_millis() as i64,
            customers_updated: stats.updated as i64,
            customers_read: stats.read as i64,
        }))
    }

    async fn get_settings(
        &self,
        request: Request<pb::GetSettingsRequest>,
    ) -> Result<Response<pb::Settings>, Status> {
        let caller = caller(&request)?;
        let tenant = tenant_of(caller, "parent", &request.get_ref().parent, READ)?;
        let mut conn = self.writer.pool.acquire().await.map_err(db)?;
        let effective = db_settings::load(&mut conn, tenant.as_str())
            .await
            .map_err(db)?;
        Ok(Response::new(settings_proto(&tenant, &effective.settings)))
    }

    async fn update_settings(
        &self,
        request: Request<pb::UpdateSettingsRequest>,
    ) -> Result<Response<pb::Settings>, Status> {
        let caller = caller(&request)?;
        let Some(proto) = request.get_ref().settings.as_ref() else {
            return Err(invalid_argument("settings", "is required"));
        };
        let tenant = TenantId::from_parent(proto.name.strip_suffix("/settings").unwrap_or(""))
            .map_err(|_| {
                invalid_argument(
                    "settings.name",
                    "must have the form tenants/{tenant}/settings",
                )
            })?;
        caller.authorize(&tenant, WRITE)?;
        let effective = settings_from(proto).validate().map_err(|errors| {
            let mut violations = FieldViolations::new();
            for (field, reason) in errors {
                violations.add(format!("settings.{field}"), reason);
            }
            violations.into_status()
        })?;
        // Settings that shape the features make every customer due in the same transaction: the due sweep computes
        // their features again within a tick or a few (about 5 500 customers a second), and the recompute
        // re-evaluates the rest at once.
        let mut tx = self.writer.pool.begin().await.map_err(db)?;
        let before = db_settings::load(&mut tx, tenant.as_str())
            .await
            .map_err(db)?;
        db_settings::save(&mut tx, tenant.as_str(), &effective.settings)
            .await
            .map_err(db)?;
        if before.settings.shape_features_unlike(&effective.settings) {
            let due =
                crate::db::features::all_due(&mut tx, tenant.as_str(), Utc::now().date_naive())
                    .await
                    .map_err(db)?;
            tracing::info!(%tenant, customers = due, "settings shape the features: every customer is due");
        }
        tx.commit().await.map_err(db)?;
        self.recompute_detached(tenant.clone()).await?;
        Ok(Response::new(settings_proto(&tenant, &effective.settings)))
    }

    type WatchEventsStream = BoxStream<WatchEventsResponse>;

    async fn watch_events(
        &self,
        request: Request<WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let caller = caller(&request)?.clone();
        let stream = self.feed.watch(&caller, request.into_inner())?;
        Ok(Response::new(Box::pin(stream)))
    }
}

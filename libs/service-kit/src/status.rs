//! Mapping service errors to gRPC statuses, once.
//!
//! Each service has one `thiserror` enum that implements [`ServiceError`]; [`to_status`] turns it into a
//! `tonic::Status` with the right code and `google.rpc` details. Internal errors are logged with their whole cause
//! chain and reach callers only as "internal error".

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The gRPC code family of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    FailedPrecondition,
    ResourceExhausted,
    /// A transient fault: the caller may retry.
    Unavailable,
    /// A bug or an unexpected fault: logged, never explained to the caller.
    Internal,
}

impl ErrorCode {
    fn grpc(self) -> Code {
        match self {
            Self::InvalidArgument => Code::InvalidArgument,
            Self::NotFound => Code::NotFound,
            Self::AlreadyExists => Code::AlreadyExists,
            Self::PermissionDenied => Code::PermissionDenied,
            Self::FailedPrecondition => Code::FailedPrecondition,
            Self::ResourceExhausted => Code::ResourceExhausted,
            Self::Unavailable => Code::Unavailable,
            Self::Internal => Code::Internal,
        }
    }
}

/// An error a service returns from its handlers.
pub trait ServiceError: std::error::Error + 'static {
    fn error_code(&self) -> ErrorCode;

    /// `google.rpc` details to attach, such as field violations.
    fn error_details(&self) -> Option<ErrorDetails> {
        None
    }
}

/// The status a caller sees for `err`.
pub fn to_status<E: ServiceError>(err: &E) -> Status {
    let code = err.error_code();
    match code {
        ErrorCode::Internal => {
            tracing::error!(error = %chain(err), "internal error");
            Status::internal("internal error")
        }
        ErrorCode::Unavailable => {
            tracing::warn!(error = %chain(err), "transient fault");
            Status::unavailable("temporarily unavailable, retry with backoff")
        }
        _ => match err.error_details() {
            Some(details) => Status::with_error_details(code.grpc(), err.to_string(), details),
            None => Status::new(code.grpc(), err.to_string()),
        },
    }
}

/// `err` and its sources, joined with ": ".
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Whether a database error is a transient fault (the database is unreachable or overloaded) rather than a bug.
pub fn db_error_code(err: &sqlx::Error) -> ErrorCode {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            ErrorCode::Unavailable
        }
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // serialization_failure, deadlock_detected, too_many_connections, cannot_connect_now, admin_shutdown
            Some("40001" | "40P01" | "53300" | "57P03" | "57P01") => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        },
        _ => ErrorCode::Internal,
    }
}

/// Field violations of one request, gathered while validating it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldViolations {
    violations: Vec<(String, String)>,
    /// Bytes of the listed violations' fields and descriptions.
    listed_bytes: usize,
    /// Violations past `MOST_LISTED_BYTES`, counted but not kept.
    unlisted: usize,
}

/// The most bytes of violations a status lists. The details travel in the trailers, base64-encoded beside the
/// message, and clients take little there: 16 KiB by default in tonic and hyper, 8 KiB in grpc-java. A request with
/// more problems than fit gets the rest counted in its message and in a last violation of its own.
const MOST_LISTED_BYTES: usize = 4096;

/// The longest field or description kept: descriptions may quote what the caller sent, which can be megabytes.
const MOST_TEXT_BYTES: usize = 256;

/// `text` cut to `MOST_TEXT_BYTES` at a character boundary, marked with "…" when cut.
fn bounded(mut text: String) -> String {
    if text.len() > MOST_TEXT_BYTES {
        let mut end = MOST_TEXT_BYTES - '…'.len_utf8();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

impl FieldViolations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        let (field, description) = (bounded(field.into()), bounded(description.into()));
        let bytes = field.len() + description.len();
        if self.unlisted == 0 && self.listed_bytes + bytes <= MOST_LISTED_BYTES {
            self.listed_bytes += bytes;
            self.violations.push((field, description));
        } else {
            self.unlisted += 1;
        }
    }

    /// Adds every violation of `other` with `prefix.` in front of its field.
    pub fn add_nested(&mut self, prefix: &str, other: FieldViolations) {
        for (field, description) in other.violations {
            let field = if field.is_empty() {
                prefix.to_owned()
            } else {
                format!("{prefix}.{field}")
            };
            self.add(field, description);
        }
        self.unlisted += other.unlisted;
    }

    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    /// Every violation added, listed or not.
    pub fn len(&self) -> usize {
        self.violations.len() + self.unlisted
    }

    /// The listed violations (the first, up to `MOST_LISTED_BYTES`).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.violations
            .iter()
            .map(|(field, description)| (field.as_str(), description.as_str()))
    }

    /// `Ok(())` when there is nothing to report, else the INVALID_ARGUMENT status.
    pub fn check(self) -> Result<(), Status> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.into_status())
        }
    }

    /// INVALID_ARGUMENT with a `BadRequest` detail listing every violation. The message names the first few so a
    /// person reading a log line sees what is wrong without decoding details.
    pub fn into_status(self) -> Status {
        let mut message = String::from("invalid argument: ");
        for (i, (field, description)) in self.violations.iter().take(3).enumerate() {
            if i > 0 {
                message.push_str("; ");
            }
            message.push_str(&format!("{field}: {description}"));
        }
        if self.len() > 3 {
            message.push_str(&format!(" (and {} more)", self.len() - 3));
        }
        Status::with_error_details(Code::InvalidArgument, message, self.into_details())
    }

    /// What a response reports: the listed violations as (field, description), then, when there were more, one
    /// with an empty field that counts the rest.
    pub fn reported(&self) -> impl Iterator<Item = (String, String)> + '_ {
        let rest = (self.unlisted > 0).then(|| {
            (
                String::new(),
                format!("{} more violations, not listed", self.unlisted),
            )
        });
        self.violations.iter().cloned().chain(rest)
    }

    /// A `BadRequest` detail listing the violations `reported` gives.
    pub fn into_details(self) -> ErrorDetails {
        let mut details = ErrorDetails::new();
        for (field, description) in self.reported() {
            details.add_bad_request_violation(field, description);
        }
        details
    }
}

/// INVALID_ARGUMENT for one bad field.
pub fn invalid_argument(field: &str, description: impl Into<String>) -> Status {
    let mut violations = FieldViolations::new();
    violations.add(field, description);
    violations.into_status()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_become_bad_request_details() {
        let mut item = FieldViolations::new();
        item.add("amount.currency_code", "unknown currency \"EUX\"");
        let mut all = FieldViolations::new();
        all.add_nested("orders[3]", item);
        let status = all.into_status();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("orders[3].amount.currency_code"));
        let bad_request = status
            .get_details_bad_request()
            .expect("bad request detail");
        assert_eq!(
            bad_request.field_violations[0].field,
            "orders[3].amount.currency_code"
        );
    }

    #[test]
    fn a_request_with_very_many_violations_lists_what_fits_in_the_trailers_and_counts_the_rest() {
        let mut item = FieldViolations::new();
        for i in 0..600 {
            item.add(format!("times[{i}]"), "is not a valid timestamp");
        }
        item.add(
            "currency_code",
            format!("unknown currency {:?}", "X".repeat(1 << 20)),
        );
        let mut all = FieldViolations::new();
        all.add_nested("a", item.clone());
        all.add_nested("b", item);
        assert_eq!(all.len(), 1202);
        let status = all.into_status();
        assert!(
            status.message().ends_with("(and 1199 more)"),
            "{}",
            status.message()
        );
        let listed = status.get_details_bad_request().unwrap().field_violations;
        let bytes: usize = listed
            .iter()
            .map(|v| v.field.len() + v.description.len())
            .sum();
        assert!(bytes <= 4096 + 64, "{bytes} bytes listed");
        let (last, shown) = listed.split_last().unwrap();
        assert_eq!(shown[0].field, "a.times[0]");
        assert_eq!(
            shown[shown.len() - 1].field,
            format!("a.times[{}]", shown.len() - 1)
        );
        assert_eq!(last.field, "");
        assert_eq!(
            last.description,
            format!("{} more violations, not listed", 1202 - shown.len())
        );
        // A description quoting a megabyte of input is cut.
        let mut one = FieldViolations::new();
        one.add(
            "currency_code",
            format!("unknown currency {:?}", "X".repeat(1 << 20)),
        );
        let listed = one.into_details();
        let description = &listed.bad_request().unwrap().field_violations[0].description;
        assert!(
            description.len() <= 256 && description.ends_with('…'),
            "{}",
            description.len()
        );
    }
}

//! Ingestion's errors and how callers see them.

use boomerang_service_kit::status::{
    ErrorCode, FieldViolations, ServiceError, db_error_code, to_status,
};
use tonic_types::ErrorDetails;

#[derive(Debug, thiserror::Error)]
pub enum IngestionError {
    /// Bad input; the violations name each field.
    #[error("invalid argument: {} field violation(s)", .0.len())]
    Invalid(FieldViolations),
    /// An atomic batch held items that are valid but refused (for example naming an erased person).
    #[error("batch refused: {} item(s) cannot be stored; nothing was stored", .0.len())]
    Refused(Vec<(String, String, String)>),
    #[error("{0} not found")]
    NotFound(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl ServiceError for IngestionError {
    fn error_code(&self) -> ErrorCode {
        match self {
            IngestionError::Invalid(_) => ErrorCode::InvalidArgument,
            IngestionError::Refused(_) => ErrorCode::FailedPrecondition,
            IngestionError::NotFound(_) => ErrorCode::NotFound,
            IngestionError::Database(err) => db_error_code(err),
        }
    }

    fn error_details(&self) -> Option<ErrorDetails> {
        match self {
            IngestionError::Invalid(violations) => Some(violations.clone().into_details()),
            IngestionError::Refused(refusals) => {
                // As many as fit in the trailers' budget (see FieldViolations), then a count of the rest.
                let mut details = ErrorDetails::new();
                let mut bytes = 0;
                for (listed, (kind, subject, description)) in refusals.iter().enumerate() {
                    bytes += kind.len() + subject.len() + description.len();
                    if bytes > 4096 {
                        details.add_precondition_failure_violation(
                            "",
                            "",
                            format!("{} more items refused, not listed", refusals.len() - listed),
                        );
                        break;
                    }
                    details.add_precondition_failure_violation(kind, subject, description);
                }
                Some(details)
            }
            _ => None,
        }
    }
}

impl From<IngestionError> for tonic::Status {
    fn from(err: IngestionError) -> Self {
        match err {
            // Field violations keep their own message, which names the first bad fields.
            IngestionError::Invalid(violations) => violations.into_status(),
            other => to_status(&other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_batch_lists_what_fits_in_the_trailers_and_counts_the_rest() {
        let refusals: Vec<(String, String, String)> = (0..5000)
            .map(|i| {
                (
                    "ERASED".to_owned(),
                    format!("orders[{i}].customer"),
                    "the customer was erased".to_owned(),
                )
            })
            .collect();
        let details = IngestionError::Refused(refusals).error_details().unwrap();
        let listed = &details.precondition_failure().unwrap().violations;
        let (last, shown) = listed.split_last().unwrap();
        assert!(shown.len() < 200, "{} listed", shown.len());
        assert_eq!(shown[0].subject, "orders[0].customer");
        assert_eq!(
            last.description,
            format!("{} more items refused, not listed", 5000 - shown.len())
        );
    }
}

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
                let mut details = ErrorDetails::new();
                for (kind, subject, description) in refusals {
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

//! Consent decisions: validation.

use boomerang_proto::ingestion as pb;
use boomerang_service_kit::status::FieldViolations;
use chrono::{DateTime, Utc};

use super::activity::required_customer;
use super::identifier::Identifier;
use super::order::parse_time;
use super::text::optional_label;

/// A validated consent decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentChange {
    pub customer: Identifier,
    pub channel: pb::ConsentChannel,
    pub purpose: pb::ConsentPurpose,
    pub granted: bool,
    pub change_time: DateTime<Utc>,
    pub source: String,
}

impl ConsentChange {
    pub fn from_proto(
        change: &pb::ConsentChange,
        now: DateTime<Utc>,
    ) -> Result<Self, FieldViolations> {
        let mut violations = FieldViolations::new();
        let customer = required_customer(change.customer.as_ref(), &mut violations);
        let Some(consent) = change.consent.as_ref() else {
            violations.add("consent", "is required");
            return Err(violations);
        };
        let channel = match pb::ConsentChannel::try_from(consent.channel) {
            Ok(pb::ConsentChannel::Unspecified) | Err(_) => {
                violations.add("consent.channel", "must be EMAIL, SMS or PUSH");
                None
            }
            Ok(channel) => Some(channel),
        };
        let purpose = match pb::ConsentPurpose::try_from(consent.purpose) {
            Ok(pb::ConsentPurpose::Unspecified) | Err(_) => {
                violations.add("consent.purpose", "must be MARKETING or TRANSACTIONAL");
                None
            }
            Ok(purpose) => Some(purpose),
        };
        let change_time = parse_time(consent.change_time.as_ref(), now)
            .map_err(|err| violations.add("consent.change_time", err))
            .ok();
        let source = match optional_label(&consent.source, 200) {
            Ok(Some(source)) => source,
            Ok(None) => {
                violations.add(
                    "consent.source",
                    "is required: say where the decision was collected",
                );
                String::new()
            }
            Err(err) => {
                violations.add("consent.source", err);
                String::new()
            }
        };
        match (customer, channel, purpose, change_time) {
            (Some(customer), Some(channel), Some(purpose), Some(change_time))
                if violations.is_empty() =>
            {
                Ok(Self {
                    customer,
                    channel,
                    purpose,
                    granted: consent.granted,
                    change_time,
                    source,
                })
            }
            _ => Err(violations),
        }
    }

    /// What makes two decisions the same decision: who, for what, decided when.
    pub fn key(
        &self,
    ) -> (
        Identifier,
        pb::ConsentChannel,
        pb::ConsentPurpose,
        DateTime<Utc>,
    ) {
        (
            self.customer.clone(),
            self.channel,
            self.purpose,
            self.change_time,
        )
    }

    pub fn to_proto(&self) -> pb::Consent {
        pb::Consent {
            channel: self.channel as i32,
            purpose: self.purpose as i32,
            granted: self.granted,
            change_time: Some(boomerang_service_kit::time::to_timestamp(self.change_time)),
            source: self.source.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boomerang_service_kit::time::to_timestamp;

    #[test]
    fn a_decision_needs_channel_purpose_time_and_source() {
        let change = pb::ConsentChange {
            customer: Some(pb::Identifier {
                kind: pb::IdentifierKind::Email as i32,
                value: "a@b.co".into(),
                namespace: String::new(),
            }),
            consent: Some(pb::Consent {
                channel: pb::ConsentChannel::Email as i32,
                purpose: pb::ConsentPurpose::Marketing as i32,
                granted: true,
                change_time: Some(to_timestamp(Utc::now())),
                source: "web-signup".into(),
            }),
        };
        assert!(ConsentChange::from_proto(&change, Utc::now()).is_ok());
        let mut bad = change;
        let consent = bad.consent.as_mut().unwrap();
        consent.channel = 0;
        consent.source.clear();
        let fields: Vec<String> = ConsentChange::from_proto(&bad, Utc::now())
            .unwrap_err()
            .iter()
            .map(|(f, _)| f.to_owned())
            .collect();
        assert_eq!(fields, ["consent.channel", "consent.source"]);
    }
}

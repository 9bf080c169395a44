//! Market transactions (spend at any merchant) and engagement events: validation.

use std::collections::BTreeMap;

use boomerang_proto::ingestion as pb;
use boomerang_service_kit::status::FieldViolations;
use chrono::{DateTime, Utc};

use super::identifier::Identifier;
use super::money::Money;
use super::order::parse_time;
use super::text::{check_id, optional_label};

/// Most properties on one engagement event.
pub const MAX_PROPERTIES: usize = 32;

/// A validated market transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketTransaction {
    pub transaction_id: String,
    pub customer: Identifier,
    pub merchant_id: String,
    pub merchant_name: String,
    pub merchant_category: String,
    /// Negative for refunds.
    pub amount: Money,
    pub occur_time: DateTime<Utc>,
}

impl MarketTransaction {
    pub fn from_proto(
        tx: &pb::MarketTransaction,
        now: DateTime<Utc>,
    ) -> Result<Self, FieldViolations> {
        let mut violations = FieldViolations::new();
        if let Err(err) = check_id(&tx.transaction_id) {
            violations.add("transaction_id", err);
        }
        let customer = required_customer(tx.customer.as_ref(), &mut violations);
        if let Err(err) = check_id(&tx.merchant_id) {
            violations.add("merchant_id", err);
        }
        let merchant_name = optional_label(&tx.merchant_name, 200)
            .unwrap_or_else(|err| {
                violations.add("merchant_name", err);
                None
            })
            .unwrap_or_default();
        let merchant_category = match optional_label(&tx.merchant_category, 64) {
            Ok(Some(category)) => category,
            Ok(None) => {
                violations.add("merchant_category", "is required");
                String::new()
            }
            Err(err) => {
                violations.add("merchant_category", err);
                String::new()
            }
        };
        let amount = Money::from_proto(tx.amount.as_ref(), true)
            .map_err(|(field, err)| {
                let field = if field.is_empty() {
                    "amount".to_owned()
                } else {
                    format!("amount.{field}")
                };
                violations.add(field, err)
            })
            .ok();
        let occur_time = parse_time(tx.occur_time.as_ref(), now)
            .map_err(|err| violations.add("occur_time", err))
            .ok();
        match (customer, amount, occur_time) {
            (Some(customer), Some(amount), Some(occur_time)) if violations.is_empty() => Ok(Self {
                transaction_id: tx.transaction_id.clone(),
                customer,
                merchant_id: tx.merchant_id.clone(),
                merchant_name,
                merchant_category,
                amount,
                occur_time,
            }),
            _ => Err(violations),
        }
    }
}

/// A validated engagement event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngagementEvent {
    pub event_id: String,
    pub customer: Identifier,
    pub kind: pb::EngagementType,
    pub occur_time: DateTime<Utc>,
    pub source: String,
    pub properties: BTreeMap<String, String>,
}

impl EngagementEvent {
    pub fn from_proto(
        event: &pb::EngagementEvent,
        now: DateTime<Utc>,
    ) -> Result<Self, FieldViolations> {
        let mut violations = FieldViolations::new();
        if let Err(err) = check_id(&event.event_id) {
            violations.add("event_id", err);
        }
        let customer = required_customer(event.customer.as_ref(), &mut violations);
        let kind = match pb::EngagementType::try_from(event.r#type) {
            Ok(pb::EngagementType::Unspecified) | Err(_) => {
                violations.add("type", "must be set to a known engagement type");
                None
            }
            Ok(kind) => Some(kind),
        };
        let occur_time = parse_time(event.occur_time.as_ref(), now)
            .map_err(|err| violations.add("occur_time", err))
            .ok();
        let source = optional_label(&event.source, 200)
            .unwrap_or_else(|err| {
                violations.add("source", err);
                None
            })
            .unwrap_or_default();
        if event.properties.len() > MAX_PROPERTIES {
            violations.add("properties", format!("at most {MAX_PROPERTIES} properties"));
        }
        for (key, value) in &event.properties {
            if key.is_empty() || key.len() > 64 || key.chars().any(char::is_control) {
                violations.add(
                    format!("properties[{key:?}]"),
                    "keys are 1 to 64 printable characters",
                );
            }
            if value.len() > 512 || value.contains('\0') {
                violations.add(
                    format!("properties[{key:?}]"),
                    "values are at most 512 bytes, without NUL characters",
                );
            }
        }
        match (customer, kind, occur_time) {
            (Some(customer), Some(kind), Some(occur_time)) if violations.is_empty() => Ok(Self {
                event_id: event.event_id.clone(),
                customer,
                kind,
                occur_time,
                source,
                properties: event.properties.clone().into_iter().collect(),
            }),
            _ => Err(violations),
        }
    }
}

/// The customer identifier an item must carry.
pub fn required_customer(
    customer: Option<&pb::Identifier>,
    violations: &mut FieldViolations,
) -> Option<Identifier> {
    match customer {
        None => {
            violations.add("customer", "is required");
            None
        }
        Some(customer) => Identifier::from_proto(customer, None)
            .map_err(|(field, err)| violations.add(format!("customer.{field}"), err))
            .ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boomerang_service_kit::time::to_timestamp;

    fn customer() -> Option<pb::Identifier> {
        Some(pb::Identifier {
            kind: pb::IdentifierKind::Partner as i32,
            value: "u-1".into(),
            namespace: "cashback-app".into(),
        })
    }

    #[test]
    fn transactions_accept_refunds_and_require_a_category() {
        let tx = pb::MarketTransaction {
            transaction_id: "T-1".into(),
            customer: customer(),
            merchant_id: "M-7".into(),
            merchant_name: "Rival Fashion".into(),
            merchant_category: "fashion".into(),
            amount: Some(pb::Money {
                currency_code: "EUR".into(),
                minor_units: -1500,
            }),
            occur_time: Some(to_timestamp(Utc::now())),
        };
        assert!(MarketTransaction::from_proto(&tx, Utc::now()).is_ok());
        let mut bad = tx;
        bad.merchant_category.clear();
        bad.customer = None;
        let fields: Vec<String> = MarketTransaction::from_proto(&bad, Utc::now())
            .unwrap_err()
            .iter()
            .map(|(f, _)| f.to_owned())
            .collect();
        assert_eq!(fields, ["customer", "merchant_category"]);
    }

    #[test]
    fn engagement_events_need_a_type_and_bounded_properties() {
        let mut event = pb::EngagementEvent {
            event_id: "E-1".into(),
            customer: customer(),
            r#type: pb::EngagementType::ProductScannedInStore as i32,
            occur_time: Some(to_timestamp(Utc::now())),
            source: "store-12".into(),
            properties: [("sku".to_owned(), "A-12".to_owned())].into(),
        };
        assert!(EngagementEvent::from_proto(&event, Utc::now()).is_ok());
        event.r#type = 0;
        event.properties.insert(String::new(), "x".into());
        let fields: Vec<String> = EngagementEvent::from_proto(&event, Utc::now())
            .unwrap_err()
            .iter()
            .map(|(f, _)| f.to_owned())
            .collect();
        assert_eq!(fields, ["type", "properties[\"\"]"]);
        // A NUL in a value, which the jsonb column cannot hold.
        event.r#type = pb::EngagementType::ProductScannedInStore as i32;
        event.properties = [("sku".to_owned(), "A\0".to_owned())].into();
        let fields: Vec<String> = EngagementEvent::from_proto(&event, Utc::now())
            .unwrap_err()
            .iter()
            .map(|(f, _)| f.to_owned())
            .collect();
        assert_eq!(fields, ["properties[\"sku\"]"]);
    }
}

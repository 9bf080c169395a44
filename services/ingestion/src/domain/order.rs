//! Orders: validation and the codes stored for channels and statuses.

use boomerang_proto::ingestion as pb;
use boomerang_service_kit::status::FieldViolations;
use boomerang_service_kit::time::from_timestamp;
use chrono::{DateTime, Duration, SubsecRound, Utc};
use sha2::{Digest, Sha256};

use super::identifier::Identifier;
use super::money::Money;
use super::text::{check_id, optional_label};

/// Most lines in one order.
pub const MAX_LINES: usize = 500;

/// A validated order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub order_id: String,
    pub customer: Option<Identifier>,
    pub channel: pb::Channel,
    pub store: String,
    pub place_time: DateTime<Utc>,
    pub status: pb::OrderStatus,
    pub amount: Money,
    pub lines: Vec<OrderLine>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub sku: String,
    pub category: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
}

impl Order {
    /// Validates an order; violations name fields relative to the order.
    pub fn from_proto(order: &pb::Order, now: DateTime<Utc>) -> Result<Self, FieldViolations> {
        let mut violations = FieldViolations::new();
        if let Err(err) = check_id(&order.order_id) {
            violations.add("order_id", err);
        }
        let customer = order.customer.as_ref().and_then(|customer| {
            Identifier::from_proto(customer, None)
                .map_err(|(field, err)| violations.add(format!("customer.{field}"), err))
                .ok()
        });
        let channel = match pb::Channel::try_from(order.channel) {
            Ok(pb::Channel::Unspecified) | Err(_) => {
                violations.add("channel", "must be STORE, WEB or APP");
                pb::Channel::Unspecified
            }
            Ok(channel) => channel,
        };
        let status = parse_status(order.status).unwrap_or_else(|err| {
            violations.add("status", err);
            pb::OrderStatus::Unspecified
        });
        let store = optional_label(&order.store, 64)
            .unwrap_or_else(|err| {
                violations.add("store", err);
                None
            })
            .unwrap_or_default();
        let place_time = parse_time(order.place_time.as_ref(), now).unwrap_or_else(|err| {
            violations.add("place_time", err);
            DateTime::UNIX_EPOCH
        });
        let amount = Money::from_proto(order.amount.as_ref(), false)
            .map_err(|(field, err)| violations.add(sub_field("amount", field), err))
            .ok();

        if order.lines.len() > MAX_LINES {
            violations.add("lines", format!("at most {MAX_LINES} lines per order"));
        }
        let mut lines = Vec::with_capacity(order.lines.len());
        for (i, line) in order.lines.iter().enumerate() {
            let mut line_violations = FieldViolations::new();
            let sku = optional_label(&line.sku, 64)
                .map_err(|err| line_violations.add("sku", err))
                .ok()
                .flatten()
                .unwrap_or_default();
            let category = optional_label(&line.category, 64)
                .map_err(|err| line_violations.add("category", err))
                .ok()
                .flatten()
                .unwrap_or_default();
            if sku.is_empty() && category.is_empty() {
                line_violations.add("sku", "a line needs a sku or a category");
            }
            if !(1..=100_000).contains(&line.quantity) {
                line_violations.add("quantity", "must be between 1 and 100000");
            }
            let price = Money::from_proto(line.unit_price.as_ref(), false)
                .map_err(|(field, err)| line_violations.add(sub_field("unit_price", field), err))
                .ok();
            if let (Some(price), Some(amount)) = (price, amount)
                && price.currency != amount.currency
            {
                line_violations.add("unit_price.currency_code", "must be the order's currency");
            }
            if line_violations.is_empty() {
                lines.push(OrderLine {
                    sku,
                    category,
                    quantity: line.quantity,
                    unit_price_minor: price.map_or(0, |p| p.minor_units),
                });
            } else {
                violations.add_nested(&format!("lines[{i}]"), line_violations);
            }
        }

        match amount {
            Some(amount) if violations.is_empty() => Ok(Self {
                order_id: order.order_id.clone(),
                customer,
                channel,
                store,
                place_time,
                status,
                amount,
                lines,
            }),
            _ => Err(violations),
        }
    }

    /// A fingerprint of the lines, stored so that a re-sent order with other lines counts as changed.
    pub fn lines_hash(&self) -> i64 {
        if self.lines.is_empty() {
            return 0;
        }
        let mut hasher = Sha256::new();
        for line in &self.lines {
            hasher.update(line.sku.as_bytes());
            hasher.update([0]);
            hasher.update(line.category.as_bytes());
            hasher.update([0]);
            hasher.update(line.quantity.to_be_bytes());
            hasher.update(line.unit_price_minor.to_be_bytes());
        }
        let digest = hasher.finalize();
        i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
    }
}

/// An order status other than UNSPECIFIED.
pub fn parse_status(value: i32) -> Result<pb::OrderStatus, String> {
    match pb::OrderStatus::try_from(value) {
        Ok(pb::OrderStatus::Unspecified) | Err(_) => {
            Err("must be PAID, PARTIALLY_PAID, PENDING, CANCELLED or REFUNDED".into())
        }
        Ok(status) => Ok(status),
    }
}

/// A time in the past (or at most a day ahead, for clock skew between tills and servers) and after 1970, cut to the
/// microsecond Postgres stores, so a time read back compares equal to the time sent.
pub fn parse_time(
    time: Option<&prost_types::Timestamp>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, String> {
    let time = time.ok_or("is required")?;
    let time = from_timestamp(time)
        .ok_or("is not a valid timestamp")?
        .trunc_subsecs(6);
    if time < DateTime::UNIX_EPOCH {
        return Err("must not be before 1970".into());
    }
    if time > now + Duration::days(1) {
        return Err("must not be in the future".into());
    }
    Ok(time)
}

fn sub_field(parent: &str, field: &str) -> String {
    if field.is_empty() {
        parent.to_owned()
    } else {
        format!("{parent}.{field}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boomerang_service_kit::time::to_timestamp;

    fn order() -> pb::Order {
        pb::Order {
            order_id: "A-1".into(),
            customer: Some(pb::Identifier {
                kind: pb::IdentifierKind::External as i32,
                value: "C-9".into(),
                namespace: String::new(),
            }),
            channel: pb::Channel::Store as i32,
            store: "lyon-2".into(),
            place_time: Some(to_timestamp(Utc::now() - Duration::days(3))),
            status: pb::OrderStatus::Paid as i32,
            amount: Some(pb::Money {
                currency_code: "EUR".into(),
                minor_units: 2933,
            }),
            lines: vec![pb::OrderLine {
                sku: "SKU-1".into(),
                category: "shoes".into(),
                quantity: 1,
                unit_price: Some(pb::Money {
                    currency_code: "EUR".into(),
                    minor_units: 2933,
                }),
            }],
            customer_name: String::new(),
        }
    }

    #[test]
    fn a_complete_order_is_accepted() {
        let parsed = Order::from_proto(&order(), Utc::now()).unwrap();
        assert_eq!(parsed.amount.minor_units, 2933);
        assert_ne!(parsed.lines_hash(), 0);
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut bad = order();
        bad.order_id = String::new();
        bad.channel = 0;
        bad.status = 42;
        bad.place_time = Some(to_timestamp(Utc::now() + Duration::days(30)));
        bad.amount.as_mut().unwrap().currency_code = "EUX".into();
        bad.lines[0].quantity = 0;
        bad.lines[0].unit_price.as_mut().unwrap().currency_code = "USD".into();
        let violations = Order::from_proto(&bad, Utc::now()).unwrap_err();
        let fields: Vec<&str> = violations.iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "order_id",
                "channel",
                "status",
                "place_time",
                "amount.currency_code",
                "lines[0].quantity"
            ]
        );
        let mut missing = order();
        missing.amount = None;
        missing.place_time = None;
        let fields: Vec<String> = Order::from_proto(&missing, Utc::now())
            .unwrap_err()
            .iter()
            .map(|(f, _)| f.to_owned())
            .collect();
        assert_eq!(fields, ["place_time", "amount"]);
    }

    #[test]
    fn line_changes_change_the_fingerprint() {
        let a = Order::from_proto(&order(), Utc::now()).unwrap();
        let mut changed = order();
        changed.lines[0].quantity = 2;
        let b = Order::from_proto(&changed, Utc::now()).unwrap();
        assert_ne!(a.lines_hash(), b.lines_hash());
    }
}

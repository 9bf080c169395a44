//! Reading import files (CSV with a header, or NDJSON) and turning each row into an API item.
//!
//! Column names are the same in both formats. Unknown columns are an error for customers, orders and transactions
//! (a typo would silently drop data); for engagement events they become the event's properties.

use std::collections::BTreeMap;
use std::io::BufRead;

use boomerang_proto::ingestion as pb;
use boomerang_service_kit::time::to_timestamp;
use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::identifier::Kind as IdentifierKind;
use crate::domain::money::Money;

/// One row of an import file: its line number, its fields, and the text written to the rejects file if it fails.
#[derive(Debug, Clone)]
pub struct Row {
    pub line: u64,
    fields: BTreeMap<String, String>,
    /// Order lines, from NDJSON only.
    lines: Vec<BTreeMap<String, String>>,
    pub raw: String,
}

impl Row {
    fn get(&self, column: &str) -> &str {
        self.fields.get(column).map_or("", |v| v.trim())
    }

    fn required(&self, column: &str) -> Result<&str, String> {
        match self.get(column) {
            "" => Err(format!("column {column} is empty")),
            value => Ok(value),
        }
    }

    /// The value of the item's own id column, used to keep every row of one item in one import stream.
    pub fn key(&self, column: &str) -> &str {
        self.get(column)
    }
}

/// A row that could not be read: its line (0 when the file cannot be read any further), its text, and why.
pub type Unreadable = (u64, String, String);

/// Reads rows from CSV with a header line.
pub fn csv_rows(reader: impl std::io::Read) -> impl Iterator<Item = Result<Row, Unreadable>> {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(reader);
    let headers = csv.headers().map(|h| {
        h.iter()
            .map(|c| c.trim().to_lowercase())
            .collect::<Vec<_>>()
    });
    let mut records = csv.into_records();
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed {
            return None;
        }
        let headers = match &headers {
            Ok(headers) => headers,
            Err(err) => {
                failed = true;
                return Some(Err((
                    0,
                    String::new(),
                    format!("cannot read the header line: {err}"),
                )));
            }
        };
        let record = records.next()?;
        Some(match record {
            Ok(record) => {
                let line = record.position().map_or(0, |p| p.line());
                let raw = record.iter().map(csv_quote).collect::<Vec<_>>().join(",");
                Ok(Row {
                    line,
                    fields: headers
                        .iter()
                        .cloned()
                        .zip(record.iter().map(str::to_owned))
                        .collect(),
                    lines: Vec::new(),
                    raw,
                })
            }
            Err(err) => {
                let line = err.position().map_or(0, |p| p.line());
                failed = line == 0;
                Err((line, String::new(), format!("malformed csv: {err}")))
            }
        })
    })
}

fn csv_quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// Reads rows from NDJSON: one JSON object per line; blank lines are skipped. A line that is not a JSON object is
/// returned as an error row so it lands in the rejects file.
pub fn ndjson_rows(reader: impl BufRead) -> impl Iterator<Item = Result<Row, Unreadable>> {
    reader.lines().enumerate().filter_map(|(n, line)| {
        let line_no = n as u64 + 1;
        let text = match line {
            Ok(text) => text,
            Err(err) => return Some(Err((line_no, String::new(), format!("cannot read: {err}")))),
        };
        if text.trim().is_empty() {
            return None;
        }
        let object = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(object)) => object,
            Ok(_) => return Some(Err((line_no, text, "a line must be a JSON object".into()))),
            Err(err) => return Some(Err((line_no, text, format!("not JSON: {err}")))),
        };
        let mut fields = BTreeMap::new();
        let mut lines = Vec::new();
        for (key, value) in object {
            if key == "lines" {
                let serde_json::Value::Array(items) = value else {
                    return Some(Err((line_no, text, "lines must be an array".into())));
                };
                for item in items {
                    let serde_json::Value::Object(item) = item else {
                        return Some(Err((line_no, text, "each line must be an object".into())));
                    };
                    lines.push(item.into_iter().map(|(k, v)| (k, scalar(v))).collect());
                }
            } else {
                fields.insert(key.to_lowercase(), scalar(value));
            }
        }
        Some(Ok(Row {
            line: line_no,
            fields,
            lines,
            raw: text,
        }))
    })
}

/// A JSON scalar as text; numbers keep their written form, so amounts are parsed exactly.
fn scalar(value: serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// How the `customer_id` column names the customer: an identifier kind, and for partner ids the namespace
/// (`partner:cashback-app`). The default is the retailer's own id (`external`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerColumn {
    kind: IdentifierKind,
    namespace: String,
}

impl Default for CustomerColumn {
    fn default() -> Self {
        Self {
            kind: IdentifierKind::External,
            namespace: String::new(),
        }
    }
}

impl std::str::FromStr for CustomerColumn {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let (kind, namespace) = raw.split_once(':').unwrap_or((raw, ""));
        let kind = IdentifierKind::from_name(kind).ok_or_else(|| {
            format!("{raw:?} is not an identifier kind (external, email, phone, loyalty_card, web_account, pos_customer, partner:NAMESPACE)")
        })?;
        if (kind == IdentifierKind::Partner) == namespace.is_empty() {
            return Err(format!(
                "{raw:?}: partner ids are written partner:NAMESPACE, other kinds without one"
            ));
        }
        Ok(Self {
            kind,
            namespace: namespace.to_owned(),
        })
    }
}

impl CustomerColumn {
    /// The customer of a row: its `customer_id`, read as the row's `customer_kind` or else this default.
    fn identifier(&self, row: &Row) -> Result<Option<pb::Identifier>, String> {
        let value = row.get("customer_id");
        if value.is_empty() {
            return Ok(None);
        }
        let column = match row.get("customer_kind") {
            "" => self.clone(),
            kind => kind.parse()?,
        };
        Ok(Some(pb::Identifier {
            kind: column.kind.to_proto() as i32,
            value: value.to_owned(),
            namespace: column.namespace,
        }))
    }
}

fn check_columns(row: &Row, allowed: &[&str]) -> Result<(), String> {
    match row
        .fields
        .keys()
        .find(|column| !allowed.contains(&column.as_str()))
    {
        Some(column) => Err(format!(
            "unknown column {column:?}; expected some of {}",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

/// A time written as RFC 3339 or as a date (`YYYY-MM-DD`, read as midnight UTC).
fn parse_time(raw: &str) -> Result<prost_types::Timestamp, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(raw) {
        return Ok(to_timestamp(time.with_timezone(&Utc)));
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map(|date| to_timestamp(date.and_hms_opt(0, 0, 0).expect("midnight").and_utc()))
        .map_err(|_| format!("{raw:?} is neither RFC 3339 nor YYYY-MM-DD"))
}

fn money(amount: &str, currency: &str) -> Result<pb::Money, String> {
    Money::parse_major(amount, currency).map(Money::to_proto)
}

/// The identifier columns of a customer file, in the order they are read.
const IDENTIFIER_COLUMNS: &[(&str, IdentifierKind)] = &[
    ("customer_id", IdentifierKind::External),
    ("email", IdentifierKind::Email),
    ("phone", IdentifierKind::Phone),
    ("loyalty_card", IdentifierKind::LoyaltyCard),
    ("web_account", IdentifierKind::WebAccount),
    ("pos_customer_id", IdentifierKind::PosCustomer),
];

pub const CUSTOMER_COLUMNS: &[&str] = &[
    "customer_id",
    "email",
    "phone",
    "loyalty_card",
    "web_account",
    "pos_customer_id",
    "partner_namespace",
    "partner_id",
    "given_name",
    "family_name",
    "birth_date",
    "postcode",
    "country",
];

pub fn customer(row: &Row) -> Result<pb::CustomerRecord, String> {
    check_columns(row, CUSTOMER_COLUMNS)?;
    let mut identifiers: Vec<pb::Identifier> = IDENTIFIER_COLUMNS
        .iter()
        .filter(|(column, _)| !row.get(column).is_empty())
        .map(|(column, kind)| pb::Identifier {
            kind: kind.to_proto() as i32,
            value: row.get(column).to_owned(),
            namespace: String::new(),
        })
        .collect();
    match (row.get("partner_namespace"), row.get("partner_id")) {
        ("", "") => {}
        (namespace, id) if !namespace.is_empty() && !id.is_empty() => {
            identifiers.push(pb::Identifier {
                kind: pb::IdentifierKind::Partner as i32,
                value: id.to_owned(),
                namespace: namespace.to_owned(),
            })
        }
        _ => return Err("partner_namespace and partner_id go together".into()),
    }
    Ok(pb::CustomerRecord {
        identifiers,
        given_name: row.get("given_name").to_owned(),
        family_name: row.get("family_name").to_owned(),
        birth_date: row.get("birth_date").to_owned(),
        postcode: row.get("postcode").to_owned(),
        country: row.get("country").to_owned(),
    })
}

pub const ORDER_COLUMNS: &[&str] = &[
    "order_id",
    "customer_id",
    "customer_kind",
    "placed_at",
    "amount",
    "currency",
    "status",
    "channel",
    "store",
];

pub fn order(row: &Row, customers: &CustomerColumn) -> Result<pb::Order, String> {
    check_columns(row, ORDER_COLUMNS)?;
    let currency = row.required("currency")?;
    let status = match row
        .required("status")?
        .to_lowercase()
        .replace([' ', '-'], "_")
        .as_str()
    {
        "paid" => pb::OrderStatus::Paid,
        "partially_paid" => pb::OrderStatus::PartiallyPaid,
        "pending" => pb::OrderStatus::Pending,
        "cancelled" | "canceled" => pb::OrderStatus::Cancelled,
        "refunded" => pb::OrderStatus::Refunded,
        other => {
            return Err(format!(
                "status {other:?} is not paid, partially_paid, pending, cancelled or refunded"
            ));
        }
    };
    let channel = match row.required("channel")?.to_lowercase().as_str() {
        "store" => pb::Channel::Store,
        "web" => pb::Channel::Web,
        "app" => pb::Channel::App,
        other => return Err(format!("channel {other:?} is not store, web or app")),
    };
    let mut lines = Vec::with_capacity(row.lines.len());
    for (i, line) in row.lines.iter().enumerate() {
        let field = |name: &str| line.get(name).map_or("", |v| v.trim());
        lines.push(pb::OrderLine {
            sku: field("sku").to_owned(),
            category: field("category").to_owned(),
            quantity: field("quantity").parse().map_err(|_| {
                format!(
                    "lines[{i}].quantity {:?} is not a whole number",
                    field("quantity")
                )
            })?,
            unit_price: Some(
                money(field("unit_price"), currency)
                    .map_err(|err| format!("lines[{i}].unit_price: {err}"))?,
            ),
        });
    }
    Ok(pb::Order {
        order_id: row.required("order_id")?.to_owned(),
        customer: customers.identifier(row)?,
        channel: channel as i32,
        store: row.get("store").to_owned(),
        place_time: Some(parse_time(row.required("placed_at")?)?),
        status: status as i32,
        amount: Some(money(row.required("amount")?, currency)?),
        lines,
        customer_name: String::new(),
    })
}

pub const TRANSACTION_COLUMNS: &[&str] = &[
    "transaction_id",
    "customer_id",
    "customer_kind",
    "merchant_id",
    "merchant_name",
    "merchant_category",
    "amount",
    "currency",
    "occurred_at",
];

pub fn transaction(row: &Row, customers: &CustomerColumn) -> Result<pb::MarketTransaction, String> {
    check_columns(row, TRANSACTION_COLUMNS)?;
    Ok(pb::MarketTransaction {
        transaction_id: row.required("transaction_id")?.to_owned(),
        customer: Some(
            customers
                .identifier(row)?
                .ok_or("column customer_id is empty")?,
        ),
        merchant_id: row.required("merchant_id")?.to_owned(),
        merchant_name: row.get("merchant_name").to_owned(),
        merchant_category: row.required("merchant_category")?.to_owned(),
        amount: Some(money(row.required("amount")?, row.required("currency")?)?),
        occur_time: Some(parse_time(row.required("occurred_at")?)?),
    })
}

/// Columns of an engagement file; any other column becomes a property of the event.
pub const EVENT_COLUMNS: &[&str] = &[
    "event_id",
    "customer_id",
    "customer_kind",
    "type",
    "occurred_at",
    "source",
];

pub fn engagement(row: &Row, customers: &CustomerColumn) -> Result<pb::EngagementEvent, String> {
    let name = row.required("type")?.to_uppercase();
    let kind = pb::EngagementType::from_str_name(&format!("ENGAGEMENT_TYPE_{name}"))
        .filter(|kind| *kind != pb::EngagementType::Unspecified)
        .ok_or_else(|| {
            format!(
                "type {:?} is not an engagement type such as product_viewed",
                row.get("type")
            )
        })?;
    Ok(pb::EngagementEvent {
        event_id: row.required("event_id")?.to_owned(),
        customer: Some(
            customers
                .identifier(row)?
                .ok_or("column customer_id is empty")?,
        ),
        r#type: kind as i32,
        occur_time: Some(parse_time(row.required("occurred_at")?)?),
        source: row.get("source").to_owned(),
        properties: row
            .fields
            .iter()
            .filter(|(column, value)| {
                !EVENT_COLUMNS.contains(&column.as_str()) && !value.is_empty()
            })
            .map(|(column, value)| (column.clone(), value.clone()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_csv(text: &str) -> Row {
        csv_rows(text.as_bytes()).next().unwrap().unwrap()
    }

    #[test]
    fn the_documented_orders_csv_reads_with_major_units_and_either_date_form() {
        let row = first_csv(
            "order_id,customer_id,placed_at,amount,currency,status,channel\n\
             A-1,C-9,2024-03-01,29.33,EUR,paid,store\n",
        );
        let order = order(&row, &CustomerColumn::default()).unwrap();
        assert_eq!(order.amount.unwrap().minor_units, 2933);
        assert_eq!(order.customer.unwrap().value, "C-9");
        assert_eq!(order.place_time.unwrap().seconds, 1_709_251_200);
        let row = first_csv(
            "order_id,customer_id,placed_at,amount,currency,status,channel\n\
             A-2,,2024-03-01T10:00:00+01:00,1500,JPY,Partially Paid,WEB\n",
        );
        let order = super::order(&row, &CustomerColumn::default()).unwrap();
        assert!(
            order.customer.is_none(),
            "an empty customer_id is a guest order"
        );
        assert_eq!(order.status(), pb::OrderStatus::PartiallyPaid);
        assert_eq!(order.place_time.unwrap().seconds, 1_709_283_600);
    }

    #[test]
    fn bad_rows_say_what_is_wrong() {
        let header = "order_id,customer_id,placed_at,amount,currency,status,channel\n";
        let cases = [
            ("A,C,2024-03-01,29.333,EUR,paid,store", "more decimals"),
            ("A,C,01/03/2024,29.33,EUR,paid,store", "neither RFC 3339"),
            (
                "A,C,2024-03-01,29.33,EUR,shipped,store",
                "status \"shipped\"",
            ),
            (",C,2024-03-01,29.33,EUR,paid,store", "order_id is empty"),
        ];
        for (line, expected) in cases {
            let row = first_csv(&format!("{header}{line}\n"));
            let err = order(&row, &CustomerColumn::default()).unwrap_err();
            assert!(err.contains(expected), "{line}: {err}");
        }
        let row = first_csv("order_id,customer,placed_at\nA,C,2024-03-01\n");
        assert!(
            order(&row, &CustomerColumn::default())
                .unwrap_err()
                .contains("unknown column \"customer\"")
        );
    }

    #[test]
    fn ndjson_rows_carry_lines_and_exact_amounts() {
        let text = r#"{"order_id":"A-1","customer_id":"u1","customer_kind":"partner:cashback-app","placed_at":"2024-03-01","amount":29.33,"currency":"EUR","status":"paid","channel":"app","lines":[{"sku":"S","category":"shoes","quantity":1,"unit_price":"29.33"}]}

not json
"#;
        let rows: Vec<_> = ndjson_rows(text.as_bytes()).collect();
        assert_eq!(rows.len(), 2, "the blank line is skipped");
        let order = order(rows[0].as_ref().unwrap(), &CustomerColumn::default()).unwrap();
        assert_eq!(order.amount.unwrap().minor_units, 2933);
        assert_eq!(order.lines[0].unit_price.clone().unwrap().minor_units, 2933);
        assert_eq!(order.customer.unwrap().namespace, "cashback-app");
        assert_eq!(rows[1].as_ref().unwrap_err().0, 3);
    }

    #[test]
    fn customer_rows_gather_identifiers_and_events_keep_extra_columns() {
        let row = first_csv("customer_id,email,phone,country\nC-1,a@b.co,0612345678,FR\n");
        assert_eq!(customer(&row).unwrap().identifiers.len(), 3);
        let row = first_csv(
            "event_id,customer_id,type,occurred_at,sku\nE-1,C-1,product_viewed,2024-01-01,A-12\n",
        );
        let event = engagement(&row, &CustomerColumn::default()).unwrap();
        assert_eq!(event.r#type(), pb::EngagementType::ProductViewed);
        assert_eq!(event.properties["sku"], "A-12");
        assert!("partner".parse::<CustomerColumn>().is_err());
        assert!("email:x".parse::<CustomerColumn>().is_err());
    }
}

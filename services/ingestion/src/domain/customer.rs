//! A customer record as a source sends it, validated: identifiers plus profile attributes.

use std::str::FromStr;

use boomerang_proto::ingestion as pb;
use boomerang_service_kit::status::FieldViolations;
use chrono::{NaiveDate, Utc};

use super::identifier::Identifier;
use super::text::optional_label;

/// Most identifiers in one record.
pub const MAX_IDENTIFIERS: usize = 20;

/// Profile attributes. `None` means "not provided": a record never blanks what another source said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub postcode: Option<String>,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<String>,
}

impl Profile {
    /// Overwrites the fields `update` provides; returns whether anything changed.
    pub fn apply(&mut self, update: &Profile) -> bool {
        fn set<T: Clone + PartialEq>(field: &mut Option<T>, value: &Option<T>) -> bool {
            match value {
                Some(v) if field.as_ref() != Some(v) => {
                    *field = Some(v.clone());
                    true
                }
                _ => false,
            }
        }
        let mut changed = set(&mut self.given_name, &update.given_name);
        changed |= set(&mut self.family_name, &update.family_name);
        changed |= set(&mut self.birth_date, &update.birth_date);
        changed |= set(&mut self.postcode, &update.postcode);
        changed |= set(&mut self.country, &update.country);
        changed
    }

    /// Fills the fields this profile lacks from `other` (used when merging: the survivor's values win).
    pub fn fill_gaps(&mut self, other: &Profile) {
        fn fill<T: Clone>(field: &mut Option<T>, value: &Option<T>) {
            if field.is_none() {
                field.clone_from(value);
            }
        }
        fill(&mut self.given_name, &other.given_name);
        fill(&mut self.family_name, &other.family_name);
        fill(&mut self.birth_date, &other.birth_date);
        fill(&mut self.postcode, &other.postcode);
        fill(&mut self.country, &other.country);
    }
}

/// A validated customer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRecord {
    /// Distinct, normalised, strongest evidence first.
    pub identifiers: Vec<Identifier>,
    pub profile: Profile,
}

impl CustomerRecord {
    /// Validates a record; violations name fields relative to the record.
    pub fn from_proto(record: &pb::CustomerRecord) -> Result<Self, FieldViolations> {
        let mut violations = FieldViolations::new();
        let country = match parse_country(&record.country) {
            Ok(country) => country,
            Err(err) => {
                violations.add("country", err);
                None
            }
        };
        let profile = Profile {
            given_name: optional_label(&record.given_name, 100)
                .unwrap_or_else(|err| report(&mut violations, "given_name", err)),
            family_name: optional_label(&record.family_name, 100)
                .unwrap_or_else(|err| report(&mut violations, "family_name", err)),
            birth_date: parse_birth_date(&record.birth_date)
                .unwrap_or_else(|err| report(&mut violations, "birth_date", err)),
            postcode: parse_postcode(&record.postcode)
                .unwrap_or_else(|err| report(&mut violations, "postcode", err)),
            country: country.clone(),
        };

        if record.identifiers.is_empty() {
            violations.add("identifiers", "a record needs at least one identifier");
        }
        if record.identifiers.len() > MAX_IDENTIFIERS {
            violations.add(
                "identifiers",
                format!("at most {MAX_IDENTIFIERS} identifiers per record"),
            );
        }
        let mut identifiers: Vec<Identifier> = Vec::with_capacity(record.identifiers.len());
        for (i, raw) in record.identifiers.iter().enumerate() {
            match Identifier::from_proto(raw, country.as_deref()) {
                Ok(id) => {
                    if let Some(clash) = identifiers.iter().find(|other| {
                        id.kind().single_valued() && other.slot() == id.slot() && **other != id
                    }) {
                        violations.add(
                            format!("identifiers[{i}]"),
                            format!(
                                "a customer has one {}; this record already gives {:?}",
                                id.kind().name(),
                                clash.value()
                            ),
                        );
                    } else if !identifiers.contains(&id) {
                        identifiers.push(id);
                    }
                }
                Err((field, err)) => violations.add(format!("identifiers[{i}].{field}"), err),
            }
        }
        if !violations.is_empty() {
            return Err(violations);
        }
        identifiers.sort();
        Ok(Self {
            identifiers,
            profile,
        })
    }
}

fn report<T>(violations: &mut FieldViolations, field: &str, err: String) -> Option<T> {
    violations.add(field, err);
    None
}

fn parse_country(raw: &str) -> Result<Option<String>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let upper = raw.to_ascii_uppercase();
    if upper.len() != 2 || iso_country::Country::from_str(&upper).is_err() {
        return Err(format!("{raw:?} is not an ISO 3166-1 alpha-2 country code"));
    }
    Ok(Some(upper))
}

fn parse_birth_date(raw: &str) -> Result<Option<NaiveDate>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let date = NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| format!("{raw:?} is not a date of the form YYYY-MM-DD"))?;
    let today = Utc::now().date_naive();
    if date > today {
        return Err("must not be in the future".into());
    }
    if date < NaiveDate::from_ymd_opt(1900, 1, 1).expect("valid date") {
        return Err("must not be before 1900".into());
    }
    Ok(Some(date))
}

fn parse_postcode(raw: &str) -> Result<Option<String>, String> {
    let Some(postcode) = optional_label(raw, 16)? else {
        return Ok(None);
    };
    if !postcode
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-')
    {
        return Err("may contain only letters, digits, spaces and dashes".into());
    }
    Ok(Some(postcode.to_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::identifier::Kind;

    fn ident(kind: pb::IdentifierKind, value: &str) -> pb::Identifier {
        pb::Identifier {
            kind: kind as i32,
            value: value.into(),
            namespace: String::new(),
        }
    }

    #[test]
    fn a_valid_record_is_normalised() {
        let record = pb::CustomerRecord {
            identifiers: vec![
                ident(pb::IdentifierKind::Phone, "06 12 34 56 78"),
                ident(pb::IdentifierKind::Email, "A@B.CO"),
                ident(pb::IdentifierKind::Email, "a@b.co"),
            ],
            given_name: " Ada ".into(),
            birth_date: "1990-02-28".into(),
            postcode: "sw1a 1aa".into(),
            country: "fr".into(),
            ..Default::default()
        };
        let parsed = CustomerRecord::from_proto(&record).unwrap();
        assert_eq!(
            parsed.identifiers.len(),
            2,
            "the repeated email counts once"
        );
        assert_eq!(parsed.identifiers[0].kind(), Kind::Email);
        assert_eq!(parsed.identifiers[1].value(), "+33612345678");
        assert_eq!(parsed.profile.given_name.as_deref(), Some("Ada"));
        assert_eq!(parsed.profile.postcode.as_deref(), Some("SW1A 1AA"));
        assert_eq!(parsed.profile.country.as_deref(), Some("FR"));
    }

    #[test]
    fn every_bad_field_is_reported() {
        let record = pb::CustomerRecord {
            identifiers: vec![
                ident(pb::IdentifierKind::WebAccount, "w1"),
                ident(pb::IdentifierKind::WebAccount, "w2"),
                ident(pb::IdentifierKind::Unspecified, "x"),
            ],
            birth_date: "2999-01-01".into(),
            country: "XX".into(),
            postcode: "75<script>".into(),
            ..Default::default()
        };
        let violations = CustomerRecord::from_proto(&record).unwrap_err();
        let fields: Vec<&str> = violations.iter().map(|(field, _)| field).collect();
        assert_eq!(
            fields,
            [
                "country",
                "birth_date",
                "postcode",
                "identifiers[1]",
                "identifiers[2].kind"
            ]
        );
        let empty = CustomerRecord::from_proto(&pb::CustomerRecord::default()).unwrap_err();
        assert_eq!(empty.iter().next().unwrap().0, "identifiers");
    }

    #[test]
    fn applying_a_profile_only_overwrites_what_it_provides() {
        let mut profile = Profile {
            given_name: Some("Ada".into()),
            postcode: Some("1000".into()),
            ..Default::default()
        };
        let update = Profile {
            postcode: Some("2000".into()),
            ..Default::default()
        };
        assert!(profile.apply(&update));
        assert_eq!(profile.given_name.as_deref(), Some("Ada"));
        assert_eq!(profile.postcode.as_deref(), Some("2000"));
        assert!(
            !profile.apply(&update),
            "applying the same values again changes nothing"
        );
    }
}

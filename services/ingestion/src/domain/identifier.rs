//! Customer identifiers: their kinds, how each is normalised, and the suppression hash kept after erasure.

use std::fmt;
use std::str::FromStr;

use boomerang_auth::TenantId;
use boomerang_proto::ingestion as pb;
use sha2::{Digest, Sha256};

use super::text;

/// Kind of a customer identifier. The order of the variants is the order of evidence strength used to pick which
/// customer a record belongs to when its identifiers point at several (see `identity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    External,
    WebAccount,
    LoyaltyCard,
    PosCustomer,
    Partner,
    Email,
    Phone,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::External,
        Kind::WebAccount,
        Kind::LoyaltyCard,
        Kind::PosCustomer,
        Kind::Partner,
        Kind::Email,
        Kind::Phone,
    ];

    pub fn from_proto(value: i32) -> Option<Self> {
        Some(match pb::IdentifierKind::try_from(value).ok()? {
            pb::IdentifierKind::Unspecified => return None,
            pb::IdentifierKind::External => Kind::External,
            pb::IdentifierKind::Email => Kind::Email,
            pb::IdentifierKind::Phone => Kind::Phone,
            pb::IdentifierKind::LoyaltyCard => Kind::LoyaltyCard,
            pb::IdentifierKind::WebAccount => Kind::WebAccount,
            pb::IdentifierKind::PosCustomer => Kind::PosCustomer,
            pb::IdentifierKind::Partner => Kind::Partner,
        })
    }

    pub fn to_proto(self) -> pb::IdentifierKind {
        match self {
            Kind::External => pb::IdentifierKind::External,
            Kind::Email => pb::IdentifierKind::Email,
            Kind::Phone => pb::IdentifierKind::Phone,
            Kind::LoyaltyCard => pb::IdentifierKind::LoyaltyCard,
            Kind::WebAccount => pb::IdentifierKind::WebAccount,
            Kind::PosCustomer => pb::IdentifierKind::PosCustomer,
            Kind::Partner => pb::IdentifierKind::Partner,
        }
    }

    /// The value stored in the database (matches the proto enum numbers).
    pub fn code(self) -> i16 {
        self.to_proto() as i16
    }

    pub fn from_code(code: i16) -> Option<Self> {
        Self::from_proto(i32::from(code))
    }

    /// Whether a customer may hold at most one value of this kind (per partner namespace for partner ids). People
    /// have several emails and phones; they have one account, one card, one id in each system.
    pub fn single_valued(self) -> bool {
        !matches!(self, Kind::Email | Kind::Phone)
    }

    /// Lower-case name used in messages and CSV headers.
    pub fn name(self) -> &'static str {
        match self {
            Kind::External => "external",
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::LoyaltyCard => "loyalty_card",
            Kind::WebAccount => "web_account",
            Kind::PosCustomer => "pos_customer",
            Kind::Partner => "partner",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// A normalised identifier. Partner ids are stored as `namespace:value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identifier {
    kind: Kind,
    value: String,
}

/// Where a single-valued identifier sits on a customer: its kind, and for partner ids its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot<'a> {
    kind: Kind,
    namespace: &'a str,
}

impl Identifier {
    /// Validates and normalises an identifier. `region` (an ISO country code) lets phone numbers be written without
    /// their country prefix.
    pub fn parse(
        kind: Kind,
        value: &str,
        namespace: &str,
        region: Option<&str>,
    ) -> Result<Self, String> {
        let value = value.trim();
        if value.is_empty() {
            return Err("must not be empty".into());
        }
        if kind != Kind::Partner && !namespace.is_empty() {
            return Err("namespace is only for partner identifiers".into());
        }
        let value = match kind {
            Kind::Email => normalise_email(value)?,
            Kind::Phone => normalise_phone(value, region)?,
            Kind::Partner => {
                if namespace.is_empty() {
                    return Err("partner identifiers need a namespace naming the partner".into());
                }
                if namespace.len() > 40
                    || !namespace.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    })
                {
                    return Err(format!(
                        "namespace {namespace:?} must be up to 40 lower-case letters, digits, '-' or '_'"
                    ));
                }
                text::check_id(value)?;
                format!("{namespace}:{value}")
            }
            Kind::External | Kind::LoyaltyCard | Kind::WebAccount | Kind::PosCustomer => {
                text::check_id(value)?;
                value.to_owned()
            }
        };
        Ok(Self { kind, value })
    }

    /// An identifier read back from the database (already normalised).
    pub fn from_stored(kind: Kind, value: String) -> Self {
        Self { kind, value }
    }

    /// Parses a proto identifier; the error is a description for the field violation.
    pub fn from_proto(
        identifier: &pb::Identifier,
        region: Option<&str>,
    ) -> Result<Self, (&'static str, String)> {
        let kind = Kind::from_proto(identifier.kind)
            .ok_or(("kind", "must be set to a known kind".to_owned()))?;
        Self::parse(kind, &identifier.value, &identifier.namespace, region)
            .map_err(|err| ("value", err))
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The normalised value as stored.
    pub fn value(&self) -> &str {
        &self.value
    }

    pub fn slot(&self) -> Slot<'_> {
        let namespace = match self.kind {
            Kind::Partner => self.value.split_once(':').map_or("", |(ns, _)| ns),
            _ => "",
        };
        Slot {
            kind: self.kind,
            namespace,
        }
    }

    /// The proto form, with partner namespaces split out again.
    pub fn to_proto(&self) -> pb::Identifier {
        let (namespace, value) = match (self.kind, self.value.split_once(':')) {
            (Kind::Partner, Some((ns, value))) => (ns.to_owned(), value.to_owned()),
            _ => (String::new(), self.value.clone()),
        };
        pb::Identifier {
            kind: self.kind.to_proto() as i32,
            value,
            namespace,
        }
    }

    /// SHA-256 of the tenant, kind and value: what stays of an erased person's identifier, enough to refuse it
    /// when it comes back and nothing more.
    pub fn suppression_hash(&self, tenant: &TenantId) -> Vec<u8> {
        let mut hasher = Sha256::new();
        hasher.update(tenant.as_str().as_bytes());
        hasher.update([0]);
        hasher.update(self.kind.code().to_be_bytes());
        hasher.update([0]);
        hasher.update(self.value.as_bytes());
        hasher.finalize().to_vec()
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.name(), self.value)
    }
}

/// A bare address, lower-cased: `Jane <jane@x.com>` (a display name, which the parser accepts) is refused, since it
/// would be a second identifier of the person whose address is jane@x.com.
fn normalise_email(raw: &str) -> Result<String, String> {
    let email = raw.to_lowercase();
    let bare = email.len() <= 254
        && email_address::EmailAddress::from_str(&email)
            .is_ok_and(|parsed| parsed.email() == email);
    if !bare {
        return Err(format!(
            "{raw:?} is not a valid email address (write the address alone)"
        ));
    }
    Ok(email)
}

fn normalise_phone(raw: &str, region: Option<&str>) -> Result<String, String> {
    let region = region.and_then(|code| code.parse::<phonenumber::country::Id>().ok());
    let number = phonenumber::parse(region, raw).map_err(|_| unreadable_phone(raw))?;
    if !phonenumber::is_valid(&number) {
        return Err(unreadable_phone(raw));
    }
    Ok(number.format().mode(phonenumber::Mode::E164).to_string())
}

fn unreadable_phone(raw: &str) -> String {
    format!(
        "{raw:?} is not a valid phone number; write it in E.164 (+33612345678) or give the record's country"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn emails_are_lower_cased_and_checked() {
        let id = Identifier::parse(Kind::Email, "  Jane.Doe@Example.COM ", "", None).unwrap();
        assert_eq!(id.value(), "jane.doe@example.com");
        assert!(Identifier::parse(Kind::Email, "jane@", "", None).is_err());
        assert!(Identifier::parse(Kind::Email, "not an email", "", None).is_err());
        // A display name would make a second identifier of the same person; a NUL cannot be stored.
        for other in ["Jane <jane.doe@example.com>", "\0 <jane.doe@example.com>"] {
            assert!(
                Identifier::parse(Kind::Email, other, "", None).is_err(),
                "{other:?}"
            );
        }
    }

    #[test]
    fn phones_become_e164_using_the_region_when_there_is_no_prefix() {
        let national = Identifier::parse(Kind::Phone, "06 12 34 56 78", "", Some("FR")).unwrap();
        let international = Identifier::parse(Kind::Phone, "+33 6 12 34 56 78", "", None).unwrap();
        assert_eq!(national.value(), "+33612345678");
        assert_eq!(national, international);
        assert!(Identifier::parse(Kind::Phone, "06 12 34 56 78", "", None).is_err());
        assert!(Identifier::parse(Kind::Phone, "+33 12", "", None).is_err());
    }

    #[test]
    fn partner_ids_carry_their_namespace() {
        let id = Identifier::parse(Kind::Partner, "u-991", "cashback-app", None).unwrap();
        assert_eq!(id.value(), "cashback-app:u-991");
        assert_eq!(id.to_proto().namespace, "cashback-app");
        assert_eq!(id.to_proto().value, "u-991");
        assert!(Identifier::parse(Kind::Partner, "u-991", "", None).is_err());
        assert!(Identifier::parse(Kind::LoyaltyCard, "L1", "app", None).is_err());
        let other = Identifier::parse(Kind::Partner, "u-991", "other-app", None).unwrap();
        assert_ne!(
            id.slot(),
            other.slot(),
            "each partner namespace is its own slot"
        );
    }

    #[test]
    fn suppression_hashes_depend_on_tenant_kind_and_value() {
        let acme = TenantId::parse("acme").unwrap();
        let globex = TenantId::parse("globex").unwrap();
        let email = Identifier::parse(Kind::Email, "a@b.co", "", None).unwrap();
        let external = Identifier::parse(Kind::External, "a@b.co", "", None).unwrap();
        assert_eq!(email.suppression_hash(&acme), email.suppression_hash(&acme));
        assert_ne!(
            email.suppression_hash(&acme),
            email.suppression_hash(&globex)
        );
        assert_ne!(
            email.suppression_hash(&acme),
            external.suppression_hash(&acme)
        );
    }

    proptest! {
        #[test]
        fn kinds_round_trip_through_codes_and_names(i in 0usize..7) {
            let kind = Kind::ALL[i];
            prop_assert_eq!(Kind::from_code(kind.code()), Some(kind));
            prop_assert_eq!(Kind::from_name(kind.name()), Some(kind));
        }

        #[test]
        fn normalising_twice_changes_nothing(local in "[a-zA-Z0-9._]{1,20}", domain in "[a-z]{1,10}") {
            let raw = format!("{local}@{domain}.com");
            if let Ok(once) = Identifier::parse(Kind::Email, &raw, "", None) {
                let twice = Identifier::parse(Kind::Email, once.value(), "", None).unwrap();
                prop_assert_eq!(once, twice);
            }
        }
    }
}

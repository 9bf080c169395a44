use std::fmt;

/// A validated tenant id: 1 to 63 characters of lower-case letters, digits and dashes, starting with a letter or
/// digit. Every row, cache key and event of Boomerang carries one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

/// Why a string is not a tenant id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidTenant(&'static str);

impl TenantId {
    /// Parses a bare tenant id such as `acme`.
    pub fn parse(raw: &str) -> Result<Self, InvalidTenant> {
        if raw.is_empty() {
            return Err(InvalidTenant("tenant id is empty"));
        }
        if raw.len() > 63 {
            return Err(InvalidTenant("tenant id is longer than 63 characters"));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(InvalidTenant(
                "tenant id may contain only lower-case letters, digits and dashes",
            ));
        }
        if raw.starts_with('-') {
            return Err(InvalidTenant("tenant id must start with a letter or digit"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// Parses a parent resource name of the form `tenants/{tenant}`.
    pub fn from_parent(parent: &str) -> Result<Self, InvalidTenant> {
        match parent.strip_prefix("tenants/") {
            Some(rest) if !rest.contains('/') => Self::parse(rest),
            _ => Err(InvalidTenant("must have the form tenants/{tenant}")),
        }
    }

    /// The bare id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The resource name `tenants/{tenant}`.
    pub fn resource_name(&self) -> String {
        format!("tenants/{}", self.0)
    }
}

/// The number in a customer's resource name (`tenants/{tenant}/customers/{number}`), written as the services write
/// it: a positive decimal without a sign or leading zeros, so each customer has exactly one name.
pub fn customer_number(raw: &str) -> Option<i64> {
    if raw.starts_with(['+', '0']) {
        return None;
    }
    raw.parse::<i64>().ok().filter(|id| *id > 0)
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TenantId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_customer_has_one_number_in_its_name() {
        assert_eq!(customer_number("5"), Some(5));
        assert_eq!(customer_number("9223372036854775807"), Some(i64::MAX));
        for other in ["+5", "05", "0", "-5", "5x", "", " 5", "9223372036854775808"] {
            assert_eq!(customer_number(other), None, "{other:?}");
        }
    }

    #[test]
    fn parses_parents_and_rejects_malformed_ones() {
        assert_eq!(
            TenantId::from_parent("tenants/acme").unwrap().as_str(),
            "acme"
        );
        assert!(TenantId::from_parent("acme").is_err());
        assert!(TenantId::from_parent("tenants/acme/customers/1").is_err());
        assert!(TenantId::from_parent("tenants/").is_err());
        assert!(TenantId::parse("Acme").is_err());
        assert!(TenantId::parse("-acme").is_err());
        assert!(TenantId::parse("a*").is_err());
    }

    proptest! {
        #[test]
        fn valid_ids_round_trip_through_resource_names(id in "[a-z0-9][a-z0-9-]{0,62}") {
            let tenant = TenantId::parse(&id).unwrap();
            prop_assert_eq!(TenantId::from_parent(&tenant.resource_name()).unwrap(), tenant);
        }
    }
}

//! Money: integer minor units and an ISO 4217 currency, never floating point.

use boomerang_proto::ingestion as pb;
use iso_currency::Currency;

/// Largest absolute amount accepted, in minor units (ten billion in major units of a two-decimal currency).
pub const MAX_MINOR_UNITS: i64 = 1_000_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    pub currency: Currency,
    pub minor_units: i64,
}

impl Money {
    /// Validates a proto amount; `allow_negative` for refunds in spend feeds. The error names the sub-field.
    pub fn from_proto(
        money: Option<&pb::Money>,
        allow_negative: bool,
    ) -> Result<Self, (&'static str, String)> {
        let money = money.ok_or(("", "is required".to_owned()))?;
        let currency =
            parse_currency(&money.currency_code).map_err(|err| ("currency_code", err))?;
        if !allow_negative && money.minor_units < 0 {
            return Err(("minor_units", "must not be negative".into()));
        }
        if money.minor_units.unsigned_abs() > MAX_MINOR_UNITS.unsigned_abs() {
            return Err((
                "minor_units",
                format!("must be at most {MAX_MINOR_UNITS} in absolute value"),
            ));
        }
        Ok(Self {
            currency,
            minor_units: money.minor_units,
        })
    }

    /// Parses an amount written in major units, such as `29.33` EUR, exactly (no floating point): at most as many
    /// decimals as the currency has.
    pub fn parse_major(amount: &str, currency_code: &str) -> Result<Self, String> {
        let currency = parse_currency(currency_code)?;
        let exponent = u32::from(currency.exponent().unwrap_or(0));
        let raw = amount.trim();
        let (negative, digits) = match raw.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let is_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || !is_digits(whole)
            || !is_digits(fraction)
            || (digits.contains('.') && fraction.is_empty())
        {
            return Err(format!("{raw:?} is not an amount like 29.33"));
        }
        if fraction.len() > exponent as usize {
            return Err(format!(
                "{raw:?} has more decimals than {} allows ({exponent})",
                currency.code()
            ));
        }
        let scale = 10_i64.pow(exponent);
        let whole: i64 = whole.parse().map_err(|_| format!("{raw:?} is too large"))?;
        let fraction: i64 = if fraction.is_empty() {
            0
        } else {
            let padded = format!("{fraction:0<width$}", width = exponent as usize);
            padded
                .parse()
                .map_err(|_| format!("{raw:?} is not an amount"))?
        };
        let minor = whole
            .checked_mul(scale)
            .and_then(|w| w.checked_add(fraction))
            .filter(|m| *m <= MAX_MINOR_UNITS)
            .ok_or_else(|| format!("{raw:?} is too large"))?;
        Ok(Self {
            currency,
            minor_units: if negative { -minor } else { minor },
        })
    }

    pub fn code(&self) -> &'static str {
        self.currency.code()
    }

    pub fn to_proto(self) -> pb::Money {
        pb::Money {
            currency_code: self.currency.code().to_owned(),
            minor_units: self.minor_units,
        }
    }
}

/// An ISO 4217 currency from its code (upper case).
pub fn parse_currency(code: &str) -> Result<Currency, String> {
    Currency::from_code(code.trim())
        .ok_or_else(|| format!("{code:?} is not an ISO 4217 currency code"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_most_negative_amount_is_refused_not_wrapped() {
        let money = |minor_units| pb::Money {
            currency_code: "EUR".into(),
            minor_units,
        };
        for minor_units in [i64::MIN, -MAX_MINOR_UNITS - 1] {
            assert_eq!(
                Money::from_proto(Some(&money(minor_units)), true)
                    .unwrap_err()
                    .0,
                "minor_units"
            );
        }
        assert!(Money::from_proto(Some(&money(-MAX_MINOR_UNITS)), true).is_ok());
    }

    #[test]
    fn major_units_follow_the_currency_exponent() {
        assert_eq!(
            Money::parse_major("29.33", "EUR").unwrap().minor_units,
            2933
        );
        assert_eq!(Money::parse_major("29.3", "EUR").unwrap().minor_units, 2930);
        assert_eq!(Money::parse_major("29", "EUR").unwrap().minor_units, 2900);
        assert_eq!(Money::parse_major("1500", "JPY").unwrap().minor_units, 1500);
        assert_eq!(
            Money::parse_major("1.234", "KWD").unwrap().minor_units,
            1234
        );
        assert_eq!(
            Money::parse_major("-5.10", "EUR").unwrap().minor_units,
            -510
        );
        assert!(Money::parse_major("1.5", "JPY").is_err());
        assert!(Money::parse_major("29.333", "EUR").is_err());
        assert!(Money::parse_major("29,33", "EUR").is_err());
        assert!(Money::parse_major("1e3", "EUR").is_err());
        assert!(Money::parse_major("12.", "EUR").is_err());
        assert!(Money::parse_major("10", "EUX").is_err());
        assert!(Money::parse_major("99999999999999999", "EUR").is_err());
    }

    #[test]
    fn proto_amounts_are_checked() {
        let eur = |minor_units| pb::Money {
            currency_code: "EUR".into(),
            minor_units,
        };
        assert!(Money::from_proto(Some(&eur(100)), false).is_ok());
        assert_eq!(
            Money::from_proto(Some(&eur(-1)), false).unwrap_err().0,
            "minor_units"
        );
        assert!(Money::from_proto(Some(&eur(-1)), true).is_ok());
        assert_eq!(Money::from_proto(None, false).unwrap_err().0, "");
        let bad = pb::Money {
            currency_code: "eur".into(),
            minor_units: 1,
        };
        assert_eq!(
            Money::from_proto(Some(&bad), false).unwrap_err().0,
            "currency_code"
        );
    }

    proptest! {
        #[test]
        fn formatting_minor_units_as_major_round_trips(minor in 0i64..MAX_MINOR_UNITS) {
            let text = format!("{}.{:02}", minor / 100, minor % 100);
            prop_assert_eq!(Money::parse_major(&text, "EUR").unwrap().minor_units, minor);
        }
    }
}

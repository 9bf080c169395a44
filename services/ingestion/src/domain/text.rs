//! Checks shared by every free-text and id field.

/// Longest id accepted (order ids, transaction ids, event ids, identifier values).
pub const MAX_ID_LEN: usize = 128;

/// An id: 1 to 128 characters, no control characters.
pub fn check_id(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.chars().count() > MAX_ID_LEN {
        return Err(format!("must be at most {MAX_ID_LEN} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// An optional label (a name, a store code): trimmed, at most `max` characters, no control characters; empty means
/// absent.
pub fn optional_label(value: &str, max: usize) -> Result<Option<String>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(Some(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_labels_are_bounded_and_printable() {
        assert!(check_id("A-1").is_ok());
        assert!(check_id("").is_err());
        assert!(check_id(&"x".repeat(MAX_ID_LEN + 1)).is_err());
        assert!(check_id("a\u{0}b").is_err());
        assert_eq!(
            optional_label("  Lyon 2 ", 10).unwrap().as_deref(),
            Some("Lyon 2")
        );
        assert_eq!(optional_label("   ", 10).unwrap(), None);
        assert!(optional_label("abcdefghijk", 10).is_err());
    }
}

//! Checks on what callers pass in, before anything is stored.

use crate::error::{Error, Result};

/// The most characters of an idempotency key (also the simulated gateway's request keys).
pub(crate) const MAX_KEY_CHARS: usize = 255;
/// The most characters of an order reference.
pub(crate) const MAX_ORDER_REFERENCE_CHARS: usize = 128;
/// The most characters of a customer id.
pub(crate) const MAX_CUSTOMER_ID_CHARS: usize = 64;
/// The most characters of a gateway's reference for a charge or a refund.
pub(crate) const MAX_GATEWAY_REFERENCE_CHARS: usize = 255;

/// Whether `s` is 1 to `max` characters without surrounding whitespace or control
/// characters.
///
/// Surrounding whitespace is refused rather than trimmed: a key is an identity, and
/// quietly changing it would make two callers' keys one. It matters on MariaDB, whose
/// comparisons ignore trailing spaces (`key` and `key ` would be one key there and two
/// elsewhere). Control characters could forge lines in logs.
pub(crate) fn is_text(s: &str, max: usize) -> bool {
    !s.is_empty() && s.chars().count() <= max && s.trim() == s && !s.chars().any(char::is_control)
}

/// [`is_text`], or [`Error::Invalid`] naming `field`.
pub(crate) fn text(field: &str, s: &str, max: usize) -> Result<()> {
    if is_text(s, max) {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "{field} must be 1 to {max} characters, without surrounding whitespace or control characters"
    )))
}

/// Whether `s` is an ISO 4217 code: three uppercase ASCII letters.
pub(crate) fn is_currency(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_bounded_unpadded_and_printable() {
        assert!(is_text("order-1:payment", 255));
        assert!(is_text(&"é".repeat(64), 64));
        assert!(is_text("with inner space", 64));
        for bad in [
            "",
            " key",
            "key ",
            "\tkey",
            "a\nb",
            "a\u{0}b",
            &"x".repeat(65),
        ] {
            assert!(!is_text(bad, 64), "{bad:?}");
        }
        let err = text("customer_id", "", 64).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid payment: customer_id must be 1 to 64 characters, without surrounding \
             whitespace or control characters"
        );
    }

    #[test]
    fn currencies() {
        assert!(is_currency("EUR"));
        for bad in ["eur", "EU", "EURO", "E1R", "", "ÉUR"] {
            assert!(!is_currency(bad), "{bad}");
        }
    }
}

//! Audit's value types. Each constructor validates; after that the value is valid.

use std::fmt;

use serde::Serialize;

use crate::error::Invalid;

/// `s` trimmed, if it is 1 to `max` characters without control characters.
///
/// Surrounding whitespace is dropped so that a lookup by subject matches however the
/// caller padded it (and MySQL, which ignores trailing spaces when comparing, agrees
/// with the other backends). Control characters are refused so that an entry cannot
/// forge extra lines in a log or a terminal that shows it.
fn parse_text(s: &str, max: usize, invalid: Invalid) -> Result<String, Invalid> {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > max || s.chars().any(char::is_control) {
        return Err(invalid);
    }
    Ok(s.to_owned())
}

/// A trimmed text of 1 to `$max` characters without control characters, parsed by
/// [`parse_text`]; `$invalid` is the refusal's message.
macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $max:literal, $invalid:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        pub struct $name(String);

        impl $name {
            /// The most characters it may have.
            pub const MAX_CHARS: usize = $max;

            /// Parses it, trimming surrounding whitespace.
            ///
            /// # Errors
            /// Blank, longer than `MAX_CHARS`, or containing control characters.
            pub fn parse(s: &str) -> Result<Self, Invalid> {
                parse_text(s, Self::MAX_CHARS, Invalid($invalid)).map(Self)
            }

            /// It as text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_type!(
    /// Who acted: a user, a service or a worker, e.g. `user:42` or
    /// `worker:reservation_expiry`. 1–128 characters, trimmed, without control characters.
    Actor,
    128,
    "must be 1 to 128 characters, not blank, without control characters"
);

text_type!(
    /// What was done, e.g. `order.placed` or `product.restocked`.
    /// 1–128 characters, trimmed, without control characters.
    Action,
    128,
    "must be 1 to 128 characters, not blank, without control characters"
);

text_type!(
    /// What was acted on, e.g. `order:0193…` or `product:WIDGET-1`; entries are looked up
    /// by subject. 1–255 characters, trimmed, without control characters. Compared exactly
    /// (case matters) on every backend.
    Subject,
    255,
    "must be 1 to 255 characters, not blank, without control characters"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_trimmed() {
        assert_eq!(Actor::parse("  user:42 ").unwrap().as_str(), "user:42");
        assert_eq!(
            Action::parse("order.placed\t").unwrap().as_str(),
            "order.placed"
        );
        assert_eq!(Subject::parse(" order:1").unwrap().as_str(), "order:1");
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        assert!(Actor::parse(&"é".repeat(128)).is_ok());
        assert!(Actor::parse(&"é".repeat(129)).is_err());
        assert!(Action::parse(&"x".repeat(128)).is_ok());
        assert!(Action::parse(&"x".repeat(129)).is_err());
        assert!(Subject::parse(&"ü".repeat(255)).is_ok());
        assert!(Subject::parse(&"x".repeat(256)).is_err());
    }

    #[test]
    fn blank_and_control_characters_are_refused() {
        for bad in ["", "   ", "\t\n", "a\nb", "a\u{0}b", "a\u{1b}[2Jb"] {
            assert!(Actor::parse(bad).is_err(), "{bad:?}");
            assert!(Action::parse(bad).is_err(), "{bad:?}");
            assert!(Subject::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_message_says_what_is_allowed() {
        assert_eq!(
            Subject::parse("").unwrap_err().to_string(),
            "must be 1 to 255 characters, not blank, without control characters"
        );
    }
}

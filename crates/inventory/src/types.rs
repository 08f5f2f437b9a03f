//! Inventory's value types. Each constructor validates; after that the value is valid.

use std::fmt;

use serde::Serialize;

/// Why a value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub &'static str);

/// A stock-keeping unit: 1–64 characters of letters, digits, `-`, `_` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Sku(String);

impl Sku {
    /// Parses a SKU.
    ///
    /// # Errors
    /// Empty, longer than 64 characters, or containing other characters.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s.is_empty() || s.len() > 64 {
            return Err(Invalid("must be 1 to 64 characters"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(Invalid(
                "may contain only letters, digits, '-', '_' and '.'",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The SKU as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A product's display name: 1–200 characters, not blank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductName(String);

impl ProductName {
    /// Parses a name, trimming surrounding whitespace.
    ///
    /// # Errors
    /// Blank, longer than 200 characters, or holding a control character (a NUL
    /// byte among them, which PostgreSQL cannot store).
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        if s.is_empty() || s.chars().count() > 200 {
            return Err(Invalid("must be 1 to 200 characters, not blank"));
        }
        if s.chars().any(char::is_control) {
            return Err(Invalid("must not contain control characters"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A quantity to reserve or restock: 1 to 1,000,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Quantity(u32);

impl Quantity {
    /// The largest quantity one request may move.
    pub const MAX: u32 = 1_000_000;

    /// Parses a quantity.
    ///
    /// # Errors
    /// Zero, negative or above [`Quantity::MAX`].
    pub fn new(n: i64) -> Result<Self, Invalid> {
        match u32::try_from(n) {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(Self(n)),
            _ => Err(Invalid("must be between 1 and 1000000")),
        }
    }

    /// The quantity.
    #[must_use]
    pub fn get(self) -> u32 {
        self.0
    }
}

/// An ISO 4217 currency code: one of [`Currency::CODES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// The ISO 4217 codes (the active list, funds and precious metals included), in
    /// order.
    pub const CODES: [&'static str; 181] = [
        "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
        "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
        "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUP", "CVE",
        "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL",
        "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR",
        "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD",
        "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK",
        "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO",
        "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON",
        "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL", "SOS",
        "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD",
        "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES", "VND",
        "VUV", "WST", "XAF", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XCD", "XCG", "XDR", "XOF",
        "XPD", "XPF", "XPT", "XSU", "XTS", "XUA", "XXX", "YER", "ZAR", "ZMW", "ZWG", "ZWL",
    ];

    /// Parses a currency code.
    ///
    /// # Errors
    /// Not one of the ISO 4217 codes ([`Currency::CODES`]).
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s.as_bytes() {
            &[a, b, c] if Self::CODES.binary_search(&s).is_ok() => Ok(Self([a, b, c])),
            _ => Err(Invalid("must be an ISO 4217 currency code, e.g. EUR")),
        }
    }

    /// The code as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII by construction")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// An amount in minor units (cents) of a currency; never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Money {
    /// The amount in minor units.
    pub minor: i64,
    /// The currency.
    pub currency: Currency,
}

impl Money {
    /// An amount of `minor` units of `currency`.
    ///
    /// # Errors
    /// A negative amount.
    pub fn new(minor: i64, currency: Currency) -> Result<Self, Invalid> {
        if minor < 0 {
            return Err(Invalid("must not be negative"));
        }
        Ok(Self { minor, currency })
    }

    /// A product's price: more than zero, since every placement is charged and a
    /// payment gateway cannot charge nothing.
    ///
    /// # Errors
    /// Zero or negative.
    pub fn price(minor: i64, currency: Currency) -> Result<Self, Invalid> {
        if minor <= 0 {
            return Err(Invalid("must be more than zero"));
        }
        Ok(Self { minor, currency })
    }
}

#[cfg(test)]
mod currency_tests {
    use super::Currency;

    #[test]
    fn only_iso_4217_codes_are_currencies() {
        assert!(Currency::CODES.windows(2).all(|w| w[0] < w[1]), "sorted");
        for code in ["EUR", "USD", "JPY", "XTS"] {
            assert_eq!(Currency::parse(code).unwrap().as_str(), code);
        }
        for bad in ["EURO", "eur", "XYZ", "AAA", "", "E\0R"] {
            assert!(Currency::parse(bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus() {
        assert!(Sku::parse("ABC-1_x.2").is_ok());
        for bad in ["", "has space", "é", &"x".repeat(65)] {
            assert!(Sku::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quantities() {
        assert_eq!(Quantity::new(1).unwrap().get(), 1);
        assert_eq!(Quantity::new(1_000_000).unwrap().get(), 1_000_000);
        for bad in [0, -1, 1_000_001, i64::MAX] {
            assert!(Quantity::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn currencies_and_money() {
        assert_eq!(Currency::parse("EUR").unwrap().as_str(), "EUR");
        for bad in ["eur", "EU", "EURO", "E1R", ""] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
        let eur = Currency::parse("EUR").unwrap();
        assert!(Money::new(-1, eur).is_err());
        assert_eq!(Money::new(0, eur).unwrap().minor, 0);
        assert!(Money::price(0, eur).is_err());
        assert_eq!(Money::price(1, eur).unwrap().minor, 1);
    }

    #[test]
    fn names_are_trimmed() {
        assert_eq!(ProductName::parse("  Widget ").unwrap().as_str(), "Widget");
        assert!(ProductName::parse("   ").is_err());
        for bad in ["a\u{0}b", "a\u{7}b", "line\nbreak", "a\u{9f}b"] {
            assert!(ProductName::parse(bad).is_err(), "{bad:?}");
        }
    }
}

//! Exact money. Amounts arrive as `Money` (units + nanos, like google.type.Money) and
//! are held as integer minor units of their ISO 4217 currency, so 2 × 29.99 + 49.99 is
//! exactly 109.97. A price finer than the currency's minor unit is refused.

use weft_proto::common::Money;

/// ISO 4217 codes weft accepts, with their minor-unit exponent (ISO 4217 table).
const CURRENCIES: &[(&str, u32)] = &[
    ("AED", 2),
    ("AUD", 2),
    ("BHD", 3),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("ILS", 2),
    ("INR", 2),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("MXN", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PLN", 2),
    ("SAR", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("TND", 3),
    ("TRY", 2),
    ("USD", 2),
    ("VND", 0),
    ("ZAR", 2),
];

/// A known currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency {
    /// ISO 4217 code.
    pub code: &'static str,
    /// Digits after the decimal point.
    pub exponent: u32,
}

impl Currency {
    /// The currency with ISO code `code` (exact, upper case).
    pub fn from_code(code: &str) -> Option<Self> {
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(code, exponent)| Self {
                code,
                exponent: *exponent,
            })
    }
}

/// Why a `Money` is not an acceptable price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoneyError {
    /// No or unknown currency code.
    UnknownCurrency(String),
    /// nanos out of range or of the other sign than units.
    Malformed,
    /// Finer than the currency's minor unit.
    TooPrecise(&'static str),
    /// Below zero.
    Negative,
    /// Beyond what weft stores.
    TooLarge,
}

impl std::fmt::Display for MoneyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownCurrency(c) if c.is_empty() => write!(f, "needs a currency_code"),
            Self::UnknownCurrency(c) => {
                write!(f, "has unknown currency {c:?} (ISO 4217, e.g. USD)")
            }
            Self::Malformed => write!(
                f,
                "nanos must be within ±999,999,999 with the sign of units"
            ),
            Self::TooPrecise(c) => write!(f, "is finer than the smallest unit of {c}"),
            Self::Negative => write!(f, "must not be negative"),
            Self::TooLarge => write!(f, "is too large"),
        }
    }
}

/// Largest amount accepted, in whole units.
const MAX_UNITS: i64 = 1_000_000_000_000;

/// `money` as minor units of its currency.
pub fn to_minor(money: &Money) -> Result<(Currency, i64), MoneyError> {
    let currency = Currency::from_code(&money.currency_code)
        .ok_or_else(|| MoneyError::UnknownCurrency(money.currency_code.clone()))?;
    let (units, nanos) = (money.units, money.nanos);
    if !(-999_999_999..=999_999_999).contains(&nanos)
        || (units > 0 && nanos < 0)
        || (units < 0 && nanos > 0)
    {
        return Err(MoneyError::Malformed);
    }
    if units < 0 || nanos < 0 {
        return Err(MoneyError::Negative);
    }
    if units > MAX_UNITS {
        return Err(MoneyError::TooLarge);
    }
    let step = 10i64.pow(9 - currency.exponent);
    if i64::from(nanos) % step != 0 {
        return Err(MoneyError::TooPrecise(currency.code));
    }
    let minor = units * 10i64.pow(currency.exponent) + i64::from(nanos) / step;
    Ok((currency, minor))
}

/// A decimal amount such as `"29.99"` in minor units of `currency`: digits, an
/// optional point and at most the currency's minor digits; never negative.
pub fn parse_decimal(currency: Currency, text: &str) -> Option<i64> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || (text.contains('.') && fraction.is_empty())
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || fraction.len() > currency.exponent as usize
    {
        return None;
    }
    let units: i64 = whole.parse().ok().filter(|u| *u <= MAX_UNITS)?;
    let padded = format!("{fraction:0<width$}", width = currency.exponent as usize);
    let minor: i64 = if padded.is_empty() {
        0
    } else {
        padded.parse().ok()?
    };
    units
        .checked_mul(10i64.pow(currency.exponent))?
        .checked_add(minor)
}

/// Minor units of `currency` as `Money`.
pub fn from_minor(currency: Currency, minor: i64) -> Money {
    let scale = 10i64.pow(currency.exponent);
    let nanos = (minor % scale) * 10i64.pow(9 - currency.exponent);
    Money {
        currency_code: currency.code.to_owned(),
        units: minor / scale,
        nanos: i32::try_from(nanos).unwrap_or(0),
    }
}

/// `amount` as a decimal string, e.g. `109.97 USD`.
pub fn display(currency: Currency, minor: i64) -> String {
    let scale = 10i64.pow(currency.exponent);
    if currency.exponent == 0 {
        return format!("{minor} {}", currency.code);
    }
    format!(
        "{}.{:0width$} {}",
        minor / scale,
        (minor % scale).abs(),
        currency.code,
        width = currency.exponent as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_to_minor_units_exactly() {
        let usd = Currency::from_code("USD").unwrap_or_else(|| panic!("USD"));
        let jpy = Currency::from_code("JPY").unwrap_or_else(|| panic!("JPY"));
        assert_eq!(parse_decimal(usd, "29.99"), Some(2999));
        assert_eq!(parse_decimal(usd, "19"), Some(1900));
        assert_eq!(parse_decimal(usd, "0.5"), Some(50));
        assert_eq!(parse_decimal(jpy, "1200"), Some(1200));
        for bad in ["", "-1", "1.999", "1,00", "abc", "1.", ".5", "1e3"] {
            assert_eq!(parse_decimal(usd, bad), None, "{bad:?}");
        }
        assert_eq!(parse_decimal(jpy, "1.5"), None);
    }

    fn usd(units: i64, nanos: i32) -> Money {
        Money {
            currency_code: "USD".into(),
            units,
            nanos,
        }
    }

    #[test]
    fn the_seed_order_totals_exactly() {
        let (c, a) = to_minor(&usd(29, 990_000_000)).unwrap();
        let (_, b) = to_minor(&usd(49, 990_000_000)).unwrap();
        let total = 2 * a + b;
        assert_eq!(total, 10_997);
        assert_eq!(from_minor(c, total), usd(109, 970_000_000));
        assert_eq!(display(c, total), "109.97 USD");
    }

    #[test]
    fn precision_sign_currency_and_range() {
        assert_eq!(
            to_minor(&usd(1, 5_000_000)),
            Err(MoneyError::TooPrecise("USD"))
        );
        assert_eq!(to_minor(&usd(-1, 0)), Err(MoneyError::Negative));
        assert_eq!(to_minor(&usd(1, -5)), Err(MoneyError::Malformed));
        assert_eq!(to_minor(&usd(0, 1_000_000_000)), Err(MoneyError::Malformed));
        assert_eq!(to_minor(&usd(MAX_UNITS + 1, 0)), Err(MoneyError::TooLarge));
        let xyz = Money {
            currency_code: "XYZ".into(),
            units: 1,
            nanos: 0,
        };
        assert!(matches!(
            to_minor(&xyz),
            Err(MoneyError::UnknownCurrency(_))
        ));
        let jpy = Money {
            currency_code: "JPY".into(),
            units: 500,
            nanos: 0,
        };
        let (c, m) = to_minor(&jpy).unwrap();
        assert_eq!((m, display(c, m)), (500, "500 JPY".to_owned()));
        let kwd = Money {
            currency_code: "KWD".into(),
            units: 1,
            nanos: 234_000_000,
        };
        let (c, m) = to_minor(&kwd).unwrap();
        assert_eq!((m, display(c, m)), (1234, "1.234 KWD".to_owned()));
    }
}

//! Payments through a pluggable provider. The default provider is deterministic, for
//! development and tests: card numbers decide the outcome (below). Only the last four
//! digits of a card are ever kept.
//!
//! | card number        | outcome                         |
//! |--------------------|---------------------------------|
//! | 4000000000000002   | declined: card declined         |
//! | 4000000000009995   | declined: insufficient funds    |
//! | 4000000000000119   | transient processing error      |
//! | any other valid    | approved                        |

use async_trait::async_trait;

/// What a provider answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charge {
    /// Approved, with the provider's payment id.
    Approved(String),
    /// Declined for good, with the reason.
    Declined(String),
    /// Failed for now; the same charge may succeed later.
    Unavailable,
}

/// A card, validated.
#[derive(Debug, Clone)]
pub struct Card {
    /// Digits only.
    pub number: String,
}

impl Card {
    /// The last four digits, the only part weft stores.
    pub fn last4(&self) -> String {
        self.number[self.number.len().saturating_sub(4)..].to_owned()
    }
}

/// Something that can charge a card.
#[async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// Charges `amount_minor` of `currency` to `card`; `idempotency_key` makes a retry
    /// of the same charge safe.
    async fn charge(
        &self,
        card: &Card,
        currency: &str,
        amount_minor: i64,
        idempotency_key: &str,
    ) -> Charge;
}

/// The deterministic provider.
#[derive(Debug, Default)]
pub struct TestProvider;

#[async_trait]
impl PaymentProvider for TestProvider {
    async fn charge(
        &self,
        card: &Card,
        _currency: &str,
        _amount_minor: i64,
        idempotency_key: &str,
    ) -> Charge {
        if weft_kit::faults::chance("payment-failure") {
            return Charge::Unavailable;
        }
        match card.number.as_str() {
            "4000000000000002" => Charge::Declined("card declined".into()),
            "4000000000009995" => Charge::Declined("insufficient funds".into()),
            "4000000000000119" => Charge::Unavailable,
            _ => Charge::Approved(format!("pay_{}", idempotency_key.replace('-', ""))),
        }
    }
}

/// Whether `digits` passes the Luhn check.
pub fn luhn(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_test_cards_and_rejects_typos() {
        assert!(luhn("4242424242424242"));
        assert!(luhn("4000000000000002"));
        assert!(!luhn("4242424242424241"));
    }
}

//! Money: integer satoshi with checked arithmetic and the fee rule (PROTOCOL §1, §3).

use std::fmt;

/// Satoshi per bitcoin.
pub const SAT_PER_BTC: u64 = 100_000_000;
/// Basis points in one whole (fees are given in bps).
pub const BPS_PER_WHOLE: u64 = 10_000;

/// An amount of satoshi. Arithmetic is checked: overflow is an error, never a wrap.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Sat(pub u64);

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum MoneyError {
    #[error("amount overflows")]
    Overflow,
    #[error("amount would become negative")]
    Underflow,
}

impl Sat {
    pub const ZERO: Sat = Sat(0);

    pub fn checked_add(self, o: Sat) -> Result<Sat, MoneyError> {
        self.0.checked_add(o.0).map(Sat).ok_or(MoneyError::Overflow)
    }
    pub fn checked_sub(self, o: Sat) -> Result<Sat, MoneyError> {
        self.0.checked_sub(o.0).map(Sat).ok_or(MoneyError::Underflow)
    }
    /// Sum of many amounts, checked.
    pub fn sum<I: IntoIterator<Item = Sat>>(it: I) -> Result<Sat, MoneyError> {
        it.into_iter().try_fold(Sat::ZERO, Sat::checked_add)
    }
}

impl fmt::Display for Sat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} sat", self.0)
    }
}

impl fmt::Debug for Sat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}sat", self.0)
    }
}

/// fee = ceil(price × fee_bps / 10 000), computed in u128 so it cannot overflow.
pub fn fee(price: Sat, fee_bps: u32) -> Sat {
    let num = price.0 as u128 * fee_bps as u128;
    let fee = num.div_ceil(BPS_PER_WHOLE as u128);
    // price ≤ u64::MAX and fee_bps ≤ u32::MAX / ... : callers keep fee_bps ≤ 10 000, so fee ≤ price.
    Sat(u64::try_from(fee).unwrap_or(u64::MAX))
}

/// price + fee, checked: what a buy bid blocks.
pub fn price_plus_fee(price: Sat, fee_bps: u32) -> Result<Sat, MoneyError> {
    price.checked_add(fee(price, fee_bps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fee_rounds_up() {
        assert_eq!(fee(Sat(0), 300), Sat(0));
        assert_eq!(fee(Sat(1), 300), Sat(1));
        assert_eq!(fee(Sat(100), 300), Sat(3));
        assert_eq!(fee(Sat(101), 300), Sat(4));
        assert_eq!(fee(Sat(1000), 300), Sat(30));
        assert_eq!(fee(Sat(1001), 300), Sat(31));
        assert_eq!(fee(Sat(u64::MAX), 10_000), Sat(u64::MAX));
    }

    proptest! {
        #[test]
        fn fee_is_ceiling(price in 0u64..u64::MAX / 20_000, bps in 0u32..=10_000) {
            let f = fee(Sat(price), bps).0 as u128;
            let exact = price as u128 * bps as u128;
            prop_assert!(f * 10_000 >= exact);
            prop_assert!(f * 10_000 < exact + 10_000);
        }
    }

    #[test]
    fn checked_ops() {
        assert_eq!(Sat(u64::MAX).checked_add(Sat(1)), Err(MoneyError::Overflow));
        assert_eq!(Sat(0).checked_sub(Sat(1)), Err(MoneyError::Underflow));
        assert_eq!(Sat::sum([Sat(1), Sat(2)]), Ok(Sat(3)));
    }
}

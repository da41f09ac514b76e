//! Transaction phases, actions and reason codes (PROTOCOL §4) as types.

use std::fmt;
use std::str::FromStr;

use crate::hash::Hash32;
use crate::money::{BPS_PER_WHOLE, Sat};

/// Which side of the book a bid is on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Buy,
    Sell,
}

/// The phases of a transaction. Phases only move forward (see [`Phase::may_follow`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The bids matched; both sides must send `establish`.
    Establishing,
    /// The buyer has established, the seller not yet.
    BuyerEstablished,
    /// The seller has established, the buyer not yet.
    SellerEstablished,
    /// Both established: the buyer sends the work to the seller.
    Transmitting,
    /// The seller proved it has the buyer's secret and is working.
    Working,
    /// The seller committed to a result (its hash, signed) and gave the exchange its key;
    /// the buyer signs a receipt for that hash to get the key. No receipt by the deadline:
    /// the buyer lapsed and pays the seller a share ([`LAPSE_SHARE_BPS`]).
    Committed,
    /// The buyer signed the receipt and got the key; it checks the result.
    Unverified,
    /// The buyer accepted. Terminal.
    Finished,
    /// The seller refused or failed the work with a reason code. Terminal.
    WorkDisputed,
    /// The buyer disputes the result: after its receipt, that the key does not open the
    /// ciphertext or the outputs break the manifest; before it, that the seller never
    /// delivered the ciphertext. The exchange decides by the evidence (the ciphertext
    /// whose hash both parties signed), decrypted with the key it holds. No evidence by
    /// the deadline: decided against the party that holds the ciphertext (the buyer after
    /// its receipt, the seller before it).
    ResultDisputed,
}

impl Phase {
    pub const ALL: [Phase; 10] = [
        Phase::Establishing,
        Phase::BuyerEstablished,
        Phase::SellerEstablished,
        Phase::Transmitting,
        Phase::Working,
        Phase::Committed,
        Phase::Unverified,
        Phase::Finished,
        Phase::WorkDisputed,
        Phase::ResultDisputed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Establishing => "establishing",
            Phase::BuyerEstablished => "buyer_established",
            Phase::SellerEstablished => "seller_established",
            Phase::Transmitting => "transmitting",
            Phase::Working => "working",
            Phase::Committed => "committed",
            Phase::Unverified => "unverified",
            Phase::Finished => "finished",
            Phase::WorkDisputed => "work_disputed",
            Phase::ResultDisputed => "result_disputed",
        }
    }

    /// A phase without a deadline of its own that ends the transaction.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Finished | Phase::WorkDisputed)
    }

    /// Rank in the forward order; a transition must increase it.
    pub fn rank(self) -> u8 {
        match self {
            Phase::Establishing => 0,
            Phase::BuyerEstablished | Phase::SellerEstablished => 1,
            Phase::Transmitting => 2,
            Phase::Working => 3,
            Phase::Committed => 4,
            Phase::Unverified => 5,
            Phase::ResultDisputed => 6,
            Phase::Finished | Phase::WorkDisputed => 7,
        }
    }

    /// Whether `next` may directly follow `self` (the state machine's edges).
    pub fn may_follow(self, next: Phase) -> bool {
        use Phase::*;
        matches!(
            (self, next),
            (Establishing, BuyerEstablished)
                | (Establishing, SellerEstablished)
                | (BuyerEstablished, Transmitting)
                | (SellerEstablished, Transmitting)
                | (Transmitting, Working)
                | (Transmitting, WorkDisputed)
                | (Working, Committed)
                | (Working, WorkDisputed)
                | (Committed, Unverified)
                | (Committed, ResultDisputed)
                | (Unverified, Finished)
                | (Unverified, ResultDisputed)
        )
    }

    /// Where the money goes if this phase's deadline passes (PROTOCOL §4): a buyer that
    /// got the key pays; one that let a committed result lapse pays a share; a dispute
    /// without evidence is decided against whoever holds the ciphertext (`receipted`: the
    /// buyer signed a receipt for it, so it has it; if not, only the seller has it);
    /// otherwise the buyer is refunded.
    pub fn on_deadline(self, receipted: bool) -> Settlement {
        match self {
            Phase::Unverified | Phase::Finished => Settlement::PaidSeller,
            Phase::Committed => Settlement::Lapsed,
            Phase::ResultDisputed if receipted => Settlement::DisputeBuyerFault,
            Phase::ResultDisputed => Settlement::DisputeSellerFault,
            _ => Settlement::RefundedBuyer,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a transaction's escrow ended. Each transaction settles exactly once; the amounts
/// of each are [`Settlement::split`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Settlement {
    /// Price to the seller, fee to the fee account.
    PaidSeller,
    /// Price and fee back to the buyer.
    RefundedBuyer,
    /// The buyer never signed a receipt for a committed result: [`LAPSE_SHARE_BPS`] of
    /// the price to the seller, the same share of the fee to the fee account, the rest
    /// back to the buyer.
    Lapsed,
    /// A dispute the evidence decided against the seller (the key does not open the
    /// ciphertext, or the outputs break the manifest): everything back to the buyer,
    /// its dispute deposit too.
    DisputeSellerFault,
    /// A dispute decided against the buyer (the result was good, or no evidence came):
    /// price to the seller, fee and the buyer's dispute deposit to the fee account.
    DisputeBuyerFault,
}

/// The seller's share of the price (and the fee account's share of the fee) when a buyer
/// lets a committed result lapse: half. The seller did the work and committed to its
/// result; the buyer who walks away without a receipt is not refunded in full, or any
/// buyer could have work done for free (issue 12), yet the seller never got to prove the
/// result opens, so it is not paid in full either.
pub const LAPSE_SHARE_BPS: u64 = 5_000;

/// What a buyer deposits when it disputes a result (`reject_result`), in basis points of
/// the price, at least [`DISPUTE_FEE_MIN_SAT`]: a tenth. Returned if the evidence shows
/// the seller at fault, paid to the fee account if not — arbitration costs the exchange a
/// decryption, and a buyer must not be able to dispute good results for free.
pub const DISPUTE_FEE_BPS: u64 = 1_000;
/// The least dispute deposit, so disputes of tiny prices or at fee 0 are not free.
pub const DISPUTE_FEE_MIN_SAT: u64 = 1;

/// The dispute deposit for a transaction of `price`: ceil(price × DISPUTE_FEE_BPS /
/// 10 000), at least [`DISPUTE_FEE_MIN_SAT`].
pub fn dispute_fee(price: Sat) -> Sat {
    let f = (price.0 as u128 * DISPUTE_FEE_BPS as u128).div_ceil(BPS_PER_WHOLE as u128);
    Sat((f as u64).max(DISPUTE_FEE_MIN_SAT))
}

/// Where a settled escrow goes. All parts add up to `price + fee + deposit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// To the seller's available money.
    pub seller: Sat,
    /// To the fee account.
    pub fees: Sat,
    /// Back to the buyer's available money.
    pub buyer: Sat,
}

impl Settlement {
    pub const ALL: [Settlement; 5] = [
        Settlement::PaidSeller,
        Settlement::RefundedBuyer,
        Settlement::Lapsed,
        Settlement::DisputeSellerFault,
        Settlement::DisputeBuyerFault,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Settlement::PaidSeller => "paid_seller",
            Settlement::RefundedBuyer => "refunded_buyer",
            Settlement::Lapsed => "lapsed",
            Settlement::DisputeSellerFault => "dispute_seller_fault",
            Settlement::DisputeBuyerFault => "dispute_buyer_fault",
        }
    }

    /// Split an escrow of `price + fee` plus the dispute `deposit` (zero unless the
    /// buyer disputed). Integer arithmetic; the parts always add up to the whole.
    pub fn split(self, price: Sat, fee: Sat, deposit: Sat) -> Split {
        let share = |x: u64| ((x as u128 * LAPSE_SHARE_BPS as u128) / BPS_PER_WHOLE as u128) as u64;
        let whole = price.0 + fee.0 + deposit.0;
        let (seller, fees) = match self {
            Settlement::PaidSeller => (price.0, fee.0),
            Settlement::RefundedBuyer | Settlement::DisputeSellerFault => (0, 0),
            Settlement::Lapsed => (share(price.0), share(fee.0)),
            Settlement::DisputeBuyerFault => (price.0, fee.0 + deposit.0),
        };
        Split { seller: Sat(seller), fees: Sat(fees), buyer: Sat(whole - seller - fees) }
    }
}

impl fmt::Display for Settlement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a seller refused or failed the work (`reject_work`), also the sandbox's result codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    BadInput,
    /// The article itself reported that it failed (the guest ABI's `failed`).
    Failed,
    Trap,
    FuelExhausted,
    MemoryExceeded,
    Timeout,
    OutputTooLarge,
    Unsupported,
    Internal,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 9] = [
        ReasonCode::BadInput,
        ReasonCode::Failed,
        ReasonCode::Trap,
        ReasonCode::FuelExhausted,
        ReasonCode::MemoryExceeded,
        ReasonCode::Timeout,
        ReasonCode::OutputTooLarge,
        ReasonCode::Unsupported,
        ReasonCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::BadInput => "bad_input",
            ReasonCode::Failed => "failed",
            ReasonCode::Trap => "trap",
            ReasonCode::FuelExhausted => "fuel_exhausted",
            ReasonCode::MemoryExceeded => "memory_exceeded",
            ReasonCode::Timeout => "timeout",
            ReasonCode::OutputTooLarge => "output_too_large",
            ReasonCode::Unsupported => "unsupported",
            ReasonCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReasonCode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ReasonCode::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown reason code {s:?}"))
    }
}

impl FromStr for Side {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "buy" => Ok(Side::Buy),
            "sell" => Ok(Side::Sell),
            _ => Err(format!("side must be buy or sell, not {s:?}")),
        }
    }
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transaction action (`op=tx&…&action=…`) with its keys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum TxAction {
    /// The buyer's `establish`: the work's hash and SHA256(work_hash ‖ secret).
    EstablishBuyer { work_hash: Hash32, secret_hash: Hash32 },
    /// The seller's `establish`: where the buyer reaches it.
    EstablishSeller { worker_url: String },
    /// The seller shows the buyer's secret (proof it got the work from the real buyer).
    Secret { secret: [u8; 32] },
    /// The seller commits to its result: the hash of the encrypted result and its key.
    /// The exchange keeps the key out of every public view.
    Result { enc_result_hash: Hash32, result_key: [u8; 32] },
    /// The buyer's receipt for the committed result (the hash must equal the committed
    /// one); the answer to this envelope carries the key.
    Receipt { enc_result_hash: Hash32 },
    /// The buyer accepts the result.
    Accept,
    /// The buyer rejects the result.
    RejectResult,
    /// The seller refuses or failed the work.
    RejectWork { reason: ReasonCode },
}

impl TxAction {
    /// The `action=` value on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            TxAction::EstablishBuyer { .. } | TxAction::EstablishSeller { .. } => "establish",
            TxAction::Secret { .. } => "secret",
            TxAction::Result { .. } => "result",
            TxAction::Receipt { .. } => "receipt",
            TxAction::Accept => "accept",
            TxAction::RejectResult => "reject_result",
            TxAction::RejectWork { .. } => "reject_work",
        }
    }

    /// Which party may send it.
    pub fn signer(&self) -> Side {
        match self {
            TxAction::EstablishBuyer { .. }
            | TxAction::Receipt { .. }
            | TxAction::Accept
            | TxAction::RejectResult => Side::Buy,
            _ => Side::Sell,
        }
    }
}

/// SHA256(work_hash ‖ secret): what the buyer commits to in `establish`.
pub fn secret_hash(work_hash: &Hash32, secret: &[u8; 32]) -> Hash32 {
    let mut v = Vec::with_capacity(64);
    v.extend_from_slice(work_hash.as_bytes());
    v.extend_from_slice(secret);
    Hash32::of(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_only_move_forward() {
        for a in Phase::ALL {
            for b in Phase::ALL {
                if a.may_follow(b) {
                    assert!(b.rank() > a.rank(), "{a} -> {b}");
                }
            }
            assert!(!a.may_follow(a));
        }
    }

    #[test]
    fn splits_add_up() {
        for s in Settlement::ALL {
            for (p, f, d) in [(0, 0, 0), (1, 1, 1), (1001, 31, 101), (u64::MAX / 4, 7, 3)] {
                let x = s.split(Sat(p), Sat(f), Sat(d));
                assert_eq!(x.seller.0 + x.fees.0 + x.buyer.0, p + f + d, "{s} {p} {f} {d}");
            }
        }
        let l = Settlement::Lapsed.split(Sat(1001), Sat(31), Sat(0));
        assert_eq!((l.seller, l.fees, l.buyer), (Sat(500), Sat(15), Sat(517)));
        let b = Settlement::DisputeBuyerFault.split(Sat(1000), Sat(30), Sat(100));
        assert_eq!((b.seller, b.fees, b.buyer), (Sat(1000), Sat(130), Sat(0)));
        assert_eq!(dispute_fee(Sat(1001)), Sat(101));
        assert_eq!(dispute_fee(Sat(0)), Sat(1));
    }

    #[test]
    fn serde_names_match_wire_names() {
        for p in Phase::ALL {
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{}\"", p.as_str()));
        }
        for s in Settlement::ALL {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        for r in ReasonCode::ALL {
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.as_str()));
            assert_eq!(r.as_str().parse::<ReasonCode>().unwrap(), r);
        }
    }
}

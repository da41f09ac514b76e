//! Transaction phases, actions and reason codes (PROTOCOL §4) as types.

use std::fmt;
use std::str::FromStr;

use crate::hash::Hash32;

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
    /// The seller posted the result (hash, receipt, key); the buyer checks it.
    Unverified,
    /// The buyer accepted. Terminal.
    Finished,
    /// The seller refused or failed the work with a reason code. Terminal.
    WorkDisputed,
    /// The buyer rejected the result; money held until the deadline.
    ResultDisputed,
}

impl Phase {
    pub const ALL: [Phase; 9] = [
        Phase::Establishing,
        Phase::BuyerEstablished,
        Phase::SellerEstablished,
        Phase::Transmitting,
        Phase::Working,
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
            Phase::Unverified => 4,
            Phase::ResultDisputed => 5,
            Phase::Finished | Phase::WorkDisputed => 6,
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
                | (Working, Unverified)
                | (Working, WorkDisputed)
                | (Unverified, Finished)
                | (Unverified, ResultDisputed)
        )
    }

    /// Where the money goes if this phase's deadline passes (PROTOCOL §4).
    pub fn on_deadline(self) -> Settlement {
        match self {
            Phase::Unverified | Phase::ResultDisputed | Phase::Finished => Settlement::PaidSeller,
            _ => Settlement::RefundedBuyer,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a transaction's escrow ended. Each transaction settles exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Settlement {
    /// Price to the seller, fee to the fee account.
    PaidSeller,
    /// Price and fee back to the buyer.
    RefundedBuyer,
}

/// Why a seller refused or failed the work (`reject_work`), also the sandbox's result codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    BadInput,
    Trap,
    FuelExhausted,
    MemoryExceeded,
    Timeout,
    OutputTooLarge,
    Unsupported,
    Internal,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 8] = [
        ReasonCode::BadInput,
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
    /// The seller's result: hash of the encrypted result, the buyer's receipt, the key.
    Result { enc_result_hash: Hash32, receipt: String, result_key: [u8; 32] },
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
            TxAction::Accept => "accept",
            TxAction::RejectResult => "reject_result",
            TxAction::RejectWork { .. } => "reject_work",
        }
    }

    /// Which party may send it.
    pub fn signer(&self) -> Side {
        match self {
            TxAction::EstablishBuyer { .. } | TxAction::Accept | TxAction::RejectResult => {
                Side::Buy
            }
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
    fn serde_names_match_wire_names() {
        for p in Phase::ALL {
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{}\"", p.as_str()));
        }
        for r in ReasonCode::ALL {
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.as_str()));
            assert_eq!(r.as_str().parse::<ReasonCode>().unwrap(), r);
        }
    }
}

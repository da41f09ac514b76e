//! JSON bodies of the exchange's HTTP API (`/v1/...`). Both the exchange and the hosts
//! use these types, so the two cannot drift apart.

use crate::hash::Hash32;
use crate::id::Id;
use crate::identity::Address;
use crate::manifest::Manifest;
use crate::message::Envelope;
use crate::money::Sat;
use crate::tx::{Phase, ReasonCode, Settlement, Side};

/// Every error answer: `{"error": code, "message": text}` with a 4xx (or 500 "internal").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

/// Phase deadlines in seconds, each counted from the previous deadline (PROTOCOL §4).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Deadlines {
    pub establishing_s: u64,
    pub transmitting_s: u64,
    pub working_s: u64,
    /// How long a buyer has to sign the receipt for a committed result.
    pub committed_s: u64,
    pub unverified_s: u64,
    pub result_disputed_s: u64,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            establishing_s: 60,
            transmitting_s: 120,
            working_s: 300,
            committed_s: 120,
            unverified_s: 900,
            result_disputed_s: 900,
        }
    }
}

impl Deadlines {
    /// Seconds the given phase may last before its deadline passes; `None` for
    /// terminal phases. `buyer_established`/`seller_established` share establishing's.
    pub fn for_phase(&self, p: Phase) -> Option<u64> {
        match p {
            Phase::Establishing | Phase::BuyerEstablished | Phase::SellerEstablished => {
                Some(self.establishing_s)
            }
            Phase::Transmitting => Some(self.transmitting_s),
            Phase::Working => Some(self.working_s),
            Phase::Committed => Some(self.committed_s),
            Phase::Unverified => Some(self.unverified_s),
            Phase::ResultDisputed => Some(self.result_disputed_s),
            Phase::Finished | Phase::WorkDisputed => None,
        }
    }
}

/// Size limits the exchange enforces.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApiLimits {
    pub body_bytes_max: u64,
    pub module_bytes_max: u64,
    pub valid_ahead_s_max: u64,
    pub wait_ms_max: u64,
}

/// `GET /v1/info`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Info {
    pub exchange_id: String,
    pub version: String,
    pub protocol: u32,
    pub fee_bps: u32,
    pub bid_lifetime_s: u64,
    pub starting_capital_sat: Sat,
    pub deadlines: Deadlines,
    pub limits: ApiLimits,
    /// The exchange's clock (unix ms), so clients can set `valid_until` against it.
    pub now_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BidState {
    Open,
    Matched,
    Cancelled,
    Expired,
}

/// `POST /v1/bids` answer and `GET /v1/bids/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BidView {
    pub id: Id,
    pub article: Hash32,
    pub side: Side,
    pub price_sat: Sat,
    /// Blocked for a buy bid: price + fee; zero for a sell bid.
    pub blocked_sat: Sat,
    pub owner: Address,
    pub state: BidState,
    pub created_ms: u64,
    pub expires_ms: u64,
    pub tx: Option<Id>,
    /// Increases on every change; long polls wait for a version above the one known.
    pub version: u64,
}

/// `GET /v1/tx/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TxView {
    pub id: Id,
    pub article: Hash32,
    pub buyer: Address,
    pub seller: Address,
    pub buy_bid: Id,
    pub sell_bid: Id,
    pub price_sat: Sat,
    pub fee_sat: Sat,
    pub phase: Phase,
    /// When the current phase's deadline passes (unix ms); none in terminal phases.
    pub deadline_ms: Option<u64>,
    pub matched_ms: u64,
    pub work_hash: Option<Hash32>,
    pub secret_hash: Option<Hash32>,
    pub worker_url: Option<String>,
    /// The hash of the encrypted result the seller committed to (`result`). The key and
    /// the buyer's receipt envelope are in no public view: whoever could resend that
    /// envelope would be answered with the key.
    pub enc_result_hash: Option<Hash32>,
    pub reason: Option<ReasonCode>,
    /// The buyer's dispute deposit, held since `reject_result` (0 before).
    pub dispute_deposit_sat: Sat,
    /// Set exactly once, when the escrow was paid out or refunded.
    pub settlement: Option<Settlement>,
    pub history: Vec<PhaseEntry>,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PhaseEntry {
    pub phase: Phase,
    pub at_ms: u64,
    /// Why the phase ended if it was not by an action (e.g. "deadline passed").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl TxView {
    /// Whether the buyer signed a receipt for the committed result (and so holds the
    /// ciphertext and got the key).
    pub fn receipted(&self) -> bool {
        self.history.iter().any(|h| h.phase == Phase::Unverified)
    }
}

/// The answer to the buyer's `receipt` (only to that envelope, also when resent): the
/// transaction as [`TxView`] (its fields flattened) and the result key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceiptAnswer {
    #[serde(flatten)]
    pub tx: TxView,
    /// 64 hex: the key the seller committed.
    pub result_key: Hash32,
}

/// `POST /v1/tx/{id}/key` (op `key`, signed by the buyer, after its receipt).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyView {
    pub tx: Id,
    pub enc_result_hash: Hash32,
    pub result_key: Hash32,
}

/// `GET /v1/accounts/{address}`: money and the account's record as a trader.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccountView {
    pub address: Address,
    pub available_sat: Sat,
    pub blocked_sat: Sat,
    #[serde(flatten)]
    pub record: Record,
}

/// An account's record, counted when its transactions settle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// Settled transactions as buyer / as seller (every settlement counts).
    pub trades_bought: u64,
    pub trades_sold: u64,
    /// As buyer: disputes the evidence decided for it / against it (no evidence counts
    /// as lost).
    pub disputes_won: u64,
    pub disputes_lost: u64,
    /// As seller: disputes lost (its key did not open the result, or the outputs broke
    /// the manifest).
    pub seller_faults: u64,
    /// As buyer: committed results it never signed a receipt for.
    pub lapsed: u64,
}

/// Query of `GET /v1/bids/{id}` and `GET /v1/tx/{id}`: wait up to `wait_ms` for a
/// version above `after_version` (long poll); answer at once without them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WaitQuery {
    pub after_version: Option<u64>,
    pub wait_ms: Option<u64>,
}

/// `POST /v1/articles`: the signed `publish` message, the manifest, the module bytes
/// (base64; empty for native articles).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    pub envelope: Envelope,
    pub manifest: Manifest,
    pub module_base64: String,
}

/// `GET /v1/articles/{id}` and list entries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArticleEntry {
    pub id: Hash32,
    pub manifest: Manifest,
    pub module_size: u64,
    pub publisher: Address,
    pub published_ms: u64,
}

/// One price level of a book.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Level {
    pub price_sat: Sat,
    pub count: u64,
}

/// A resting bid and, in plain words, why it is not matching.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestingBid {
    pub id: Id,
    pub side: Side,
    pub price_sat: Sat,
    pub reason: String,
}

/// `GET /v1/articles/{id}/book`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BookView {
    pub article: Hash32,
    /// Highest price first.
    pub buys: Vec<Level>,
    /// Lowest price first.
    pub sells: Vec<Level>,
    pub last_price_sat: Option<Sat>,
    pub median_time_to_match_ms: Option<u64>,
    pub resting: Vec<RestingBid>,
}

/// `GET /v1/ledger`: the exchange's money totals. Conservation holds when
/// `available_sat + blocked_sat + fees_sat == created_sat`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LedgerView {
    /// Accounts seen so far (each was credited the starting capital once).
    pub accounts: u64,
    /// All money ever created (accounts × starting capital).
    pub created_sat: Sat,
    pub available_sat: Sat,
    /// Escrow of open buy bids and unsettled transactions.
    pub blocked_sat: Sat,
    /// The fee account.
    pub fees_sat: Sat,
    pub open_bids: u64,
    /// Transactions not settled yet.
    pub open_txs: u64,
    pub bids_total: u64,
    pub txs_total: u64,
}

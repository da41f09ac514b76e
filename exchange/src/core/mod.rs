//! The exchange's sans-IO core: order books with price-time priority, the ledger, the
//! transaction phase machine, the article registry and the nonce memory.
//!
//! **Architecture invariant:** the core does no IO and reads no clock. Every method takes
//! `now_ms`; the shell passes the wall clock, tests pass whatever they like. Given the
//! same accepted commands with the same `now_ms`, the core reaches the same state: that
//! is how the shell restores it from its SQLite command log after a restart.
//!
//! **Architecture invariant:** money is conserved. After every change
//! `available + blocked + fees == created` and no balance is negative; the check runs
//! in production code ([`Ledger::assert_conserved`]) and stops the exchange loudly.

mod ledger;

#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

// foldhash: per-map random seeds like std's SipHash, at a fraction of its cost.
use foldhash::HashMap;

use bitwrk_protocol::api::{
    AccountView, ArticleEntry, BidState, BidView, BookView, Deadlines, KeyView, LedgerView, Level,
    PhaseEntry, ReceiptAnswer, Record, RestingBid, TxView,
};
use bitwrk_protocol::manifest::Runtime;
use bitwrk_protocol::message::{Message, Operation, VALID_AHEAD_S_MAX};
use bitwrk_protocol::money::{fee, price_plus_fee};
use bitwrk_protocol::{Address, Hash32, Id, Manifest, Phase, Sat, Settlement, Side, TxAction, tx};

pub use ledger::Ledger;

use crate::limits::{
    ARTICLES_MAX, ARTICLES_PER_PUBLISHER_MAX, BOOK_RESTING_SHOWN_MAX, MATCH_TIMES_KEPT,
    MODULE_BYTES_MAX, OPEN_BIDS_PER_ACCOUNT_MAX, PRICE_SAT_MAX, PUBLISHER_BYTES_MAX,
};
use bitwrk_protocol::manifest::caps::MANIFEST_BYTES_MAX;

/// The exchange's rules: what the flags set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rules {
    pub exchange_id: String,
    pub fee_bps: u32,
    pub bid_lifetime_ms: u64,
    pub deadlines: Deadlines,
    pub starting_capital: Sat,
}

/// A message whose signature the shell has checked: who signed which exact text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Signed {
    pub signer: Address,
    pub text: String,
}

/// A state-changing request, as the shell hands it in and as the log stores it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// `POST /v1/bids`. The ids are drawn by the shell so that replay is deterministic;
    /// `tx_id` names the transaction if the bid matches at once. `funded`: the shell's
    /// decision whether a signer seen for the first time gets the starting capital (its
    /// source address is within the funding quota, PROTOCOL §3); logged, so replay
    /// credits the same. Logs written before the quota existed funded every account.
    Bid {
        signed: Signed,
        bid_id: Id,
        tx_id: Id,
        #[serde(default = "funded_by_default")]
        funded: bool,
    },
    /// `POST /v1/bids/{bid}/cancel`.
    Cancel { signed: Signed, bid: Id },
    /// `POST /v1/tx/{tx}`.
    Tx { signed: Signed, tx: Id },
    /// `POST /v1/articles`; the shell has checked the module bytes against the message.
    Publish { signed: Signed, manifest: Manifest },
    /// The exchange's verdict on a disputed result: the shell decrypted the evidence
    /// (whose SHA256 is `enc_result_hash`) with the committed key and checked it against
    /// the manifest. `seller_fault` holds why the seller is at fault, `None` if the
    /// result was good. Logged, so replay never decrypts again.
    Verdict { tx: Id, enc_result_hash: Hash32, seller_fault: Option<String> },
}

fn funded_by_default() -> bool {
    true
}

impl Command {
    /// The signed message the command carries (none for a verdict).
    pub fn signed(&self) -> Option<&Signed> {
        match self {
            Command::Bid { signed, .. }
            | Command::Cancel { signed, .. }
            | Command::Tx { signed, .. }
            | Command::Publish { signed, .. } => Some(signed),
            Command::Verdict { .. } => None,
        }
    }

    /// The op this command's endpoint takes.
    fn op(&self) -> &'static str {
        match self {
            Command::Bid { .. } => "bid",
            Command::Cancel { .. } => "cancel",
            Command::Tx { .. } | Command::Verdict { .. } => "tx",
            Command::Publish { .. } => "publish",
        }
    }
}

/// A disputed transaction as the evidence check needs it ([`Core::dispute`]).
#[derive(Debug, Clone)]
pub struct Dispute {
    /// The key the seller committed.
    pub key: [u8; 32],
    /// The hash the evidence must have.
    pub enc_result_hash: Hash32,
    pub article: Hash32,
    /// The parties' transfer credential: an upload must carry it.
    pub transfer_auth: Hash32,
}

/// What an accepted request answers (and answers again for the same envelope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Bid(BidView),
    Tx(TxView),
    /// The answer to the buyer's `receipt`: the only answer that carries the key.
    Receipt(Box<ReceiptAnswer>),
    Article(ArticleEntry),
}

/// The result of an accepted command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub answer: Answer,
    /// The command changed state and must be logged before it is acknowledged. False for
    /// the repeat of an envelope already accepted and for an already published article.
    pub changed_state: bool,
}

/// Why a request is refused. [`CoreError::code`] is the API's `error` string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error("{0}")]
    BadMessage(String),
    #[error("message is for exchange {found:?}, this is {ours:?}")]
    WrongExchange { found: String, ours: String },
    #[error("message expired: valid_until {valid_until} is before now ({now_s})")]
    Expired { valid_until: u64, now_s: u64 },
    #[error("valid_until {valid_until} is more than {VALID_AHEAD_S_MAX} s ahead of now ({now_s})")]
    TooFarAhead { valid_until: u64, now_s: u64 },
    #[error("nonce already used by {0} for a different message")]
    NonceReused(Address),
    #[error("this endpoint takes op={expected}, the message has op={found}")]
    WrongOp { expected: &'static str, found: &'static str },
    #[error("the message names {in_message}, the URL names {in_url}")]
    IdMismatch { in_message: String, in_url: String },
    #[error("article {0} is not published here")]
    UnknownArticle(Hash32),
    #[error("no bid {0}")]
    UnknownBid(Id),
    #[error("no transaction {0}")]
    UnknownTx(Id),
    #[error("price {0} sat is outside 1..={PRICE_SAT_MAX}")]
    BadPrice(u64),
    #[error("{signer} does not own bid {bid}")]
    NotOwner { signer: Address, bid: Id },
    #[error("{signer} is not the {role} of transaction {tx}")]
    NotParty { signer: Address, role: &'static str, tx: Id },
    #[error("bid {bid} is {state:?}, only an open bid can be cancelled")]
    BidNotOpen { bid: Id, state: BidState },
    #[error(
        "insufficient funds: the bid needs {need} sat (price + fee), {available} sat are available"
    )]
    InsufficientFunds { need: u64, available: u64 },
    #[error("action {action} is not allowed in phase {phase}")]
    WrongPhase { action: &'static str, phase: Phase },
    #[error("transaction {tx} is settled ({settlement:?}); it takes no more actions")]
    TxClosed { tx: Id, settlement: Settlement },
    #[error("the secret does not match the buyer's secret_hash")]
    BadSecret,
    #[error("the receipt names result {found}, the seller committed {committed}")]
    BadReceipt { found: Hash32, committed: Hash32 },
    #[error("the evidence hashes to {found}, the committed result is {committed}")]
    WrongEvidence { found: Hash32, committed: Hash32 },
    #[error("invalid manifest: {0}")]
    BadManifest(String),
    #[error("id {0} is taken; retry")]
    IdTaken(Id),
    #[error("the registry is full ({ARTICLES_MAX} articles)")]
    RegistryFull,
    #[error(
        "{publisher} has published {count} articles ({bytes} bytes); a publisher may have at \
         most {ARTICLES_PER_PUBLISHER_MAX} articles and {PUBLISHER_BYTES_MAX} bytes"
    )]
    QuotaExceeded { publisher: Address, count: usize, bytes: u64 },
    #[error(
        "{0} has {OPEN_BIDS_PER_ACCOUNT_MAX} open bids, the most one account may have; \
         cancel one or wait for a match or expiry"
    )]
    TooManyBids(Address),
}

impl CoreError {
    /// The machine-readable code (the API's `error` field).
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::BadMessage(_) => "bad_message",
            CoreError::WrongExchange { .. } => "wrong_exchange",
            CoreError::Expired { .. } => "expired",
            CoreError::TooFarAhead { .. } => "too_far_ahead",
            CoreError::NonceReused(_) => "nonce_reused",
            CoreError::WrongOp { .. } => "wrong_op",
            CoreError::IdMismatch { .. } => "id_mismatch",
            CoreError::UnknownArticle(_) => "unknown_article",
            CoreError::UnknownBid(_) => "unknown_bid",
            CoreError::UnknownTx(_) => "unknown_tx",
            CoreError::BadPrice(_) => "bad_price",
            CoreError::NotOwner { .. } => "not_owner",
            CoreError::NotParty { .. } => "not_party",
            CoreError::BidNotOpen { .. } => "bid_not_open",
            CoreError::InsufficientFunds { .. } => "insufficient_funds",
            CoreError::WrongPhase { .. } => "wrong_phase",
            CoreError::TxClosed { .. } => "tx_closed",
            CoreError::BadSecret => "bad_secret",
            CoreError::BadReceipt { .. } => "bad_receipt",
            CoreError::WrongEvidence { .. } => "wrong_evidence",
            CoreError::BadManifest(_) => "bad_manifest",
            CoreError::IdTaken(_) => "id_taken",
            CoreError::RegistryFull => "registry_full",
            CoreError::QuotaExceeded { .. } => "quota_exceeded",
            CoreError::TooManyBids(_) => "too_many_bids",
        }
    }
}

/// A bid as the core keeps it.
#[derive(Debug, Clone)]
struct Bid {
    view: BidView,
    /// Time priority among equal prices: the order bids were accepted in.
    seq: u64,
    /// The fee rate when the bid was placed; a match charges the buy bid's rate, so the
    /// escrow never exceeds what the buy bid blocked, even if a restart changed the fee.
    fee_bps: u32,
    /// Sellers a buy bid must not match (at most `BID_EXCLUDE_MAX`).
    exclude: Vec<Address>,
}

/// One article's book: open bids by price, oldest first among equals.
#[derive(Debug, Default, Clone)]
struct Book {
    /// (highest price first, seq) → bid
    buys: BTreeMap<(Reverse<u64>, u64), Id>,
    /// (lowest price first, seq) → bid
    sells: BTreeMap<(u64, u64), Id>,
    last_price: Option<Sat>,
    /// How long the resting bid of each recent match had waited.
    match_waits_ms: VecDeque<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum DeadlineKind {
    BidExpiry,
    TxPhase,
}

struct NonceEntry {
    text_hash: Hash32,
    /// Boxed: the map holds one entry per signed request for as long as its
    /// `valid_until`, and an inline answer (as big as a transaction view) made each entry
    /// ~8× larger, which made growing the map the writer's biggest cost.
    answer: Box<Answer>,
}

/// The whole exchange state. See the module doc.
pub struct Core {
    rules: Rules,
    now_ms: u64,
    /// Bumped on every change of a bid or transaction; their `version` is its value then.
    version: u64,
    next_seq: u64,
    ledger: Ledger,
    bids: HashMap<Id, Bid>,
    txs: HashMap<Id, TxView>,
    /// Result keys committed by sellers: in no public view, released only in the answer
    /// to the buyer's receipt and to its signed `key` read.
    result_keys: HashMap<Id, [u8; 32]>,
    /// The transfer credential of each transaction (`transfer_auth` of the buyer's
    /// secret, learnt from the seller's `secret`): only the two parties know the secret,
    /// so only they may upload evidence. In no view.
    transfer_auths: HashMap<Id, Hash32>,
    /// Each account's record (trades, disputes, faults, lapses).
    records: HashMap<Address, Record>,
    books: HashMap<Hash32, Book>,
    articles: BTreeMap<Hash32, ArticleEntry>,
    /// Per publisher: (articles, bytes of modules and canonical manifests), bounded by
    /// [`ARTICLES_PER_PUBLISHER_MAX`] and [`PUBLISHER_BYTES_MAX`].
    publishers: HashMap<Address, (usize, u64)>,
    deadlines: BTreeSet<(u64, DeadlineKind, Id)>,
    nonces: HashMap<(Address, [u8; 16]), NonceEntry>,
    /// (valid_until s, signer, nonce): forgotten once valid_until has passed.
    nonce_expiry: BTreeSet<(u64, Address, [u8; 16])>,
    open_bids: u64,
    /// Open bids per account (no entry: none), bounded by [`OPEN_BIDS_PER_ACCOUNT_MAX`].
    open_bids_by: HashMap<Address, u32>,
    open_txs: u64,
    /// Bids and transactions changed since the last [`Core::take_changed`].
    changed: Vec<Id>,
    /// Replaying the log: the per-account and per-publisher caps and the manifest cap are
    /// not applied, since every logged command was accepted (a log written before a cap
    /// existed, or under a higher one, must still load). Off for live requests.
    replaying: bool,
}

impl Core {
    pub fn new(rules: Rules) -> Core {
        assert!(rules.fee_bps <= crate::limits::FEE_BPS_MAX, "fee_bps above 100 %");
        let ledger = Ledger::new(rules.starting_capital);
        Core {
            rules,
            now_ms: 0,
            version: 0,
            next_seq: 0,
            ledger,
            bids: HashMap::default(),
            txs: HashMap::default(),
            result_keys: HashMap::default(),
            transfer_auths: HashMap::default(),
            records: HashMap::default(),
            books: HashMap::default(),
            articles: BTreeMap::new(),
            publishers: HashMap::default(),
            deadlines: BTreeSet::new(),
            nonces: HashMap::default(),
            nonce_expiry: BTreeSet::new(),
            open_bids: 0,
            open_bids_by: HashMap::default(),
            open_txs: 0,
            changed: Vec::new(),
            replaying: false,
        }
    }

    /// Change the rules from here on (a restart with other flags). The exchange id never
    /// changes. Rule changes are logged, so replay applies them at the same point.
    pub fn set_rules(&mut self, rules: Rules) {
        assert_eq!(rules.exchange_id, self.rules.exchange_id, "the exchange id never changes");
        assert!(rules.fee_bps <= crate::limits::FEE_BPS_MAX, "fee_bps above 100 %");
        self.ledger.set_starting_capital(rules.starting_capital);
        self.rules = rules;
    }

    /// Apply logged commands (true) or live requests (false, the default); see the field.
    pub fn set_replaying(&mut self, replaying: bool) {
        self.replaying = replaying;
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The core's clock: the highest `now_ms` it was given.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// When the next bid expires or transaction deadline passes.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.deadlines.first().map(|d| d.0)
    }

    /// Ids of bids and transactions changed since the last call (for notifications).
    pub fn take_changed(&mut self) -> Vec<Id> {
        std::mem::take(&mut self.changed)
    }

    /// Move the clock to `now_ms` (never backwards) and fire every deadline up to it,
    /// in deadline order. Deterministic: the result depends only on the state and the
    /// deadlines passed, not on how often this is called.
    pub fn advance(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        while let Some(&(at, kind, ref id)) = self.deadlines.first() {
            if at > self.now_ms {
                break;
            }
            let id = id.clone();
            self.deadlines.pop_first();
            match kind {
                DeadlineKind::BidExpiry => self.expire_bid(&id),
                DeadlineKind::TxPhase => self.tx_deadline(&id, at),
            }
        }
        let now_s = self.now_ms / 1000;
        while let Some(&(valid_until, ref addr, nonce)) = self.nonce_expiry.first() {
            if valid_until >= now_s {
                break;
            }
            let key = (addr.clone(), nonce);
            self.nonce_expiry.pop_first();
            self.nonces.remove(&key);
        }
        self.ledger.assert_conserved();
    }

    /// Apply a command at `now_ms` (after firing the deadlines up to it).
    pub fn apply(&mut self, cmd: &Command, now_ms: u64) -> Result<Applied, CoreError> {
        let Some(signed) = cmd.signed() else {
            self.advance(now_ms);
            let Command::Verdict { tx, enc_result_hash, seller_fault } = cmd else {
                unreachable!("only a verdict has no signed message")
            };
            let answer = self.verdict(tx, enc_result_hash, seller_fault.as_deref())?;
            self.ledger.assert_conserved();
            return Ok(Applied { answer, changed_state: true });
        };
        let msg = Message::parse(&signed.text).map_err(|e| CoreError::BadMessage(e.to_string()));
        match msg {
            Ok(msg) => self.apply_parsed(cmd, msg, now_ms),
            Err(e) => {
                self.advance(now_ms);
                Err(e)
            }
        }
    }

    /// [`Core::apply`] for a caller that has parsed the signed text already (the shell
    /// parses it before checking the signature): `msg` must be `Message::parse` of
    /// `cmd`'s signed text.
    pub fn apply_parsed(
        &mut self,
        cmd: &Command,
        msg: Message,
        now_ms: u64,
    ) -> Result<Applied, CoreError> {
        self.advance(now_ms);
        let Some(signed) = cmd.signed() else { return self.apply(cmd, now_ms) };
        debug_assert_eq!(Message::parse(&signed.text).as_ref(), Ok(&msg));
        self.check_envelope(&msg, self.now_ms)?;
        // Scope first: an envelope is answered (also from nonce memory) only at the
        // endpoint and for the id it was made for.
        if cmd.op() != msg.op.name() {
            return Err(CoreError::WrongOp { expected: cmd.op(), found: msg.op.name() });
        }
        let (url_id, msg_id) = match (cmd, &msg.op) {
            (Command::Cancel { bid, .. }, Operation::Cancel { bid: m }) => (Some(bid), Some(m)),
            (Command::Tx { tx, .. }, Operation::Tx { tx: m, .. }) => (Some(tx), Some(m)),
            _ => (None, None),
        };
        if url_id != msg_id {
            return Err(CoreError::IdMismatch {
                in_message: msg_id.map(|i| i.to_string()).unwrap_or_default(),
                in_url: url_id.map(|i| i.to_string()).unwrap_or_default(),
            });
        }
        let text_hash = Hash32::of(signed.text.as_bytes());
        let key = (signed.signer.clone(), msg.nonce);
        if let Some(seen) = self.nonces.get(&key) {
            if seen.text_hash == text_hash {
                return Ok(Applied { answer: (*seen.answer).clone(), changed_state: false });
            }
            return Err(CoreError::NonceReused(signed.signer.clone()));
        }
        let signer = &signed.signer;
        let applied = match (cmd, &msg.op) {
            (
                Command::Bid { bid_id, tx_id, funded, .. },
                Operation::Bid { article, side, price, exclude },
            ) => Applied {
                answer: self.place_bid(
                    (signer, *funded),
                    (bid_id, tx_id),
                    *article,
                    *side,
                    *price,
                    exclude,
                )?,
                changed_state: true,
            },
            (Command::Cancel { bid, .. }, Operation::Cancel { .. }) => {
                Applied { answer: self.cancel_bid(signer, bid)?, changed_state: true }
            }
            (Command::Tx { tx, .. }, Operation::Tx { action, .. }) => {
                Applied { answer: self.tx_action(signer, tx, action)?, changed_state: true }
            }
            (
                Command::Publish { manifest, .. },
                Operation::Publish { article, module_sha256, size },
            ) => self.publish(signer, manifest, *article, *module_sha256, *size)?,
            (cmd, op) => return Err(CoreError::WrongOp { expected: cmd.op(), found: op.name() }),
        };
        if applied.changed_state {
            let answer = Box::new(applied.answer.clone());
            self.nonces.insert(key, NonceEntry { text_hash, answer });
            self.nonce_expiry.insert((msg.valid_until, signed.signer.clone(), msg.nonce));
        }
        self.ledger.assert_conserved();
        Ok(applied)
    }

    fn bump(&mut self, id: &Id) -> u64 {
        self.version += 1;
        self.changed.push(id.clone());
        self.version
    }

    /// Place a bid under the ids the shell drew: (the bid's, its transaction's if it matches).
    fn place_bid(
        &mut self,
        (owner, funded): (&Address, bool),
        (bid_id, tx_id): (&Id, &Id),
        article: Hash32,
        side: Side,
        price: Sat,
        exclude: &[Address],
    ) -> Result<Answer, CoreError> {
        if !self.articles.contains_key(&article) {
            return Err(CoreError::UnknownArticle(article));
        }
        if price.0 == 0 || price.0 > PRICE_SAT_MAX {
            return Err(CoreError::BadPrice(price.0));
        }
        if self.bids.contains_key(bid_id) {
            return Err(CoreError::IdTaken(bid_id.clone()));
        }
        if self.txs.contains_key(tx_id) {
            return Err(CoreError::IdTaken(tx_id.clone()));
        }
        if !self.replaying
            && self.open_bids_by.get(owner).copied().unwrap_or(0) as usize
                >= OPEN_BIDS_PER_ACCOUNT_MAX
        {
            return Err(CoreError::TooManyBids(owner.clone()));
        }
        let blocked = match side {
            // Checked although the price is capped: a request never reaches a panic.
            Side::Buy => price_plus_fee(price, self.rules.fee_bps)
                .map_err(|_| CoreError::BadPrice(price.0))?,
            Side::Sell => Sat::ZERO,
        };
        // Refuse before anything changes: a refused command is not logged, so it must
        // leave no trace (not even a newly credited account) or replay would differ.
        let (available, _) = self.ledger.balance(owner, funded);
        if available < blocked {
            return Err(CoreError::InsufficientFunds { need: blocked.0, available: available.0 });
        }
        self.ledger.open_account(owner, funded);
        self.ledger.block(owner, blocked).expect("checked above");
        let seq = self.next_seq;
        self.next_seq += 1;
        let now = self.now_ms;
        let expires_ms = now + self.rules.bid_lifetime_ms;
        let version = self.bump(bid_id);
        let view = BidView {
            id: bid_id.clone(),
            article,
            side,
            price_sat: price,
            blocked_sat: blocked,
            owner: owner.clone(),
            state: BidState::Open,
            created_ms: now,
            expires_ms,
            tx: None,
            version,
        };
        let exclude = exclude.to_vec();
        self.bids.insert(bid_id.clone(), Bid { view, seq, fee_bps: self.rules.fee_bps, exclude });
        self.open_bids += 1;
        *self.open_bids_by.entry(owner.clone()).or_default() += 1;

        let book = self.books.entry(article).or_default();
        let bids = &self.bids;
        // The best counter bid in price-time order that the buy side does not exclude.
        // Skipping is bounded by the book: excluded sellers' bids at matching prices.
        let counter = match side {
            Side::Buy => {
                let ex = &bids[bid_id].exclude;
                book.sells
                    .iter()
                    .take_while(|(k, _)| k.0 <= price.0)
                    .find(|(_, id)| !ex.contains(&bids[*id].view.owner))
                    .map(|(_, id)| id.clone())
            }
            Side::Sell => book
                .buys
                .iter()
                .take_while(|(k, _)| k.0.0 >= price.0)
                .find(|(_, id)| !bids[*id].exclude.contains(owner))
                .map(|(_, id)| id.clone()),
        };
        match counter {
            Some(resting) => self.make_match(&resting, bid_id, tx_id),
            None => {
                match side {
                    Side::Buy => book.buys.insert((Reverse(price.0), seq), bid_id.clone()),
                    Side::Sell => book.sells.insert((price.0, seq), bid_id.clone()),
                };
                self.deadlines.insert((expires_ms, DeadlineKind::BidExpiry, bid_id.clone()));
            }
        }
        Ok(Answer::Bid(self.bids[bid_id].view.clone()))
    }

    /// Match the incoming bid with the resting one: the older (resting) bid's price.
    fn make_match(&mut self, resting_id: &Id, incoming_id: &Id, tx_id: &Id) {
        let resting = self.bids[resting_id].view.clone();
        let incoming = self.bids[incoming_id].view.clone();
        let price = resting.price_sat;
        let book = self.books.get_mut(&resting.article).expect("a resting bid has a book");
        match resting.side {
            Side::Buy => {
                book.buys.remove(&(Reverse(resting.price_sat.0), self.bids[resting_id].seq))
            }
            Side::Sell => book.sells.remove(&(resting.price_sat.0, self.bids[resting_id].seq)),
        }
        .expect("resting bid is in its book");
        book.last_price = Some(price);
        if book.match_waits_ms.len() == MATCH_TIMES_KEPT {
            book.match_waits_ms.pop_front();
        }
        book.match_waits_ms.push_back(self.now_ms - resting.created_ms);
        self.deadlines.remove(&(resting.expires_ms, DeadlineKind::BidExpiry, resting_id.clone()));

        let (buy, sell) =
            if resting.side == Side::Buy { (&resting, &incoming) } else { (&incoming, &resting) };
        let fee_sat = fee(price, self.bids[&buy.id].fee_bps);
        let escrow = price.checked_add(fee_sat).expect("capped");
        // The buy bid blocked price + fee at its own price; give back the difference now.
        let refund =
            buy.blocked_sat.checked_sub(escrow).expect("a buy never matches above its price");
        self.ledger.unblock(&buy.owner, refund);

        let deadline = self.now_ms + self.rules.deadlines.establishing_s * 1000;
        let tx = TxView {
            id: tx_id.clone(),
            article: resting.article,
            buyer: buy.owner.clone(),
            seller: sell.owner.clone(),
            buy_bid: buy.id.clone(),
            sell_bid: sell.id.clone(),
            price_sat: price,
            fee_sat,
            phase: Phase::Establishing,
            deadline_ms: Some(deadline),
            matched_ms: self.now_ms,
            work_hash: None,
            secret_hash: None,
            worker_url: None,
            enc_result_hash: None,
            reason: None,
            dispute_deposit_sat: Sat::ZERO,
            settlement: None,
            history: vec![PhaseEntry {
                phase: Phase::Establishing,
                at_ms: self.now_ms,
                note: None,
            }],
            version: self.bump(tx_id),
        };
        let buy_id = buy.id.clone();
        self.txs.insert(tx_id.clone(), tx);
        self.open_txs += 1;
        self.deadlines.insert((deadline, DeadlineKind::TxPhase, tx_id.clone()));
        for id in [resting_id, incoming_id] {
            let v = self.bump(id);
            let b = &mut self.bids.get_mut(id).expect("exists").view;
            b.state = BidState::Matched;
            b.tx = Some(tx_id.clone());
            b.version = v;
            if *id == buy_id {
                b.blocked_sat = escrow;
            }
            let owner = b.owner.clone();
            self.open_bids -= 1;
            self.bid_closed_for(&owner);
        }
    }

    /// End an open bid (expired or cancelled): out of the book, its money unblocked.
    fn close_bid(&mut self, id: &Id, state: BidState) {
        let bid = self.bids.get(id).expect("exists").clone();
        debug_assert_eq!(bid.view.state, BidState::Open);
        let book = self.books.get_mut(&bid.view.article).expect("an open bid has a book");
        match bid.view.side {
            Side::Buy => book.buys.remove(&(Reverse(bid.view.price_sat.0), bid.seq)),
            Side::Sell => book.sells.remove(&(bid.view.price_sat.0, bid.seq)),
        }
        .expect("open bid is in its book");
        self.deadlines.remove(&(bid.view.expires_ms, DeadlineKind::BidExpiry, id.clone()));
        self.ledger.unblock(&bid.view.owner, bid.view.blocked_sat);
        let v = self.bump(id);
        let b = &mut self.bids.get_mut(id).expect("exists").view;
        b.state = state;
        b.version = v;
        self.open_bids -= 1;
        self.bid_closed_for(&bid.view.owner);
    }

    /// One open bid of `owner` fewer; an account with none leaves the map.
    fn bid_closed_for(&mut self, owner: &Address) {
        let n = self.open_bids_by.get_mut(owner).expect("an open bid is counted");
        *n -= 1;
        if *n == 0 {
            self.open_bids_by.remove(owner);
        }
    }

    fn expire_bid(&mut self, id: &Id) {
        if self.bids.get(id).is_some_and(|b| b.view.state == BidState::Open) {
            self.close_bid(id, BidState::Expired);
        }
    }

    fn cancel_bid(&mut self, signer: &Address, id: &Id) -> Result<Answer, CoreError> {
        let bid = self.bids.get(id).ok_or_else(|| CoreError::UnknownBid(id.clone()))?;
        if bid.view.owner != *signer {
            return Err(CoreError::NotOwner { signer: signer.clone(), bid: id.clone() });
        }
        if bid.view.state != BidState::Open {
            return Err(CoreError::BidNotOpen { bid: id.clone(), state: bid.view.state });
        }
        self.close_bid(id, BidState::Cancelled);
        Ok(Answer::Bid(self.bids[id].view.clone()))
    }

    /// Pay out or refund a transaction's escrow. Exactly once per transaction.
    fn settle(&mut self, tx_id: &Id, how: Settlement) {
        let tx = self.txs.get_mut(tx_id).expect("exists");
        assert!(tx.settlement.is_none(), "transaction {tx_id} would settle twice");
        tx.settlement = Some(how);
        let (buyer, seller) = (tx.buyer.clone(), tx.seller.clone());
        let split = how.split(tx.price_sat, tx.fee_sat, tx.dispute_deposit_sat);
        self.ledger.settle(&buyer, &seller, split);
        self.open_txs -= 1;
        self.records.entry(seller.clone()).or_default().trades_sold += 1;
        let b = self.records.entry(buyer).or_default();
        b.trades_bought += 1;
        match how {
            Settlement::PaidSeller | Settlement::RefundedBuyer => {}
            Settlement::Lapsed => b.lapsed += 1,
            Settlement::DisputeBuyerFault => b.disputes_lost += 1,
            Settlement::DisputeSellerFault => {
                b.disputes_won += 1;
                self.records.entry(seller).or_default().seller_faults += 1;
            }
        }
    }

    fn tx_deadline(&mut self, id: &Id, at: u64) {
        let Some(tx) = self.txs.get(id) else { return };
        if tx.settlement.is_some() || tx.deadline_ms != Some(at) {
            return;
        }
        let phase = tx.phase;
        let how = phase.on_deadline(tx.receipted());
        self.settle(id, how);
        let v = self.bump(id);
        let tx = self.txs.get_mut(id).expect("exists");
        tx.deadline_ms = None;
        tx.version = v;
        let note = match how {
            Settlement::PaidSeller => "deadline passed; price paid to the seller",
            Settlement::RefundedBuyer => "deadline passed; price and fee refunded to the buyer",
            Settlement::Lapsed => {
                "deadline passed without a receipt; the buyer lapsed and pays the seller a share"
            }
            Settlement::DisputeBuyerFault => {
                "deadline passed without evidence; decided against the buyer, who holds the \
                 ciphertext it signed for"
            }
            Settlement::DisputeSellerFault => {
                "deadline passed without evidence of delivery; decided against the seller"
            }
        };
        tx.history.push(PhaseEntry { phase, at_ms: at, note: Some(note.into()) });
    }

    fn tx_action(
        &mut self,
        signer: &Address,
        id: &Id,
        action: &TxAction,
    ) -> Result<Answer, CoreError> {
        let tx = self.txs.get(id).ok_or_else(|| CoreError::UnknownTx(id.clone()))?;
        let (role, party) = match action.signer() {
            Side::Buy => ("buyer", &tx.buyer),
            Side::Sell => ("seller", &tx.seller),
        };
        if party != signer {
            return Err(CoreError::NotParty { signer: signer.clone(), role, tx: id.clone() });
        }
        if let Some(settlement) = tx.settlement {
            return Err(CoreError::TxClosed { tx: id.clone(), settlement });
        }
        let phase = tx.phase;
        let wrong = || CoreError::WrongPhase { action: action.name(), phase };
        let next = match (action, phase) {
            (TxAction::EstablishBuyer { .. }, Phase::Establishing) => Phase::BuyerEstablished,
            (TxAction::EstablishBuyer { .. }, Phase::SellerEstablished) => Phase::Transmitting,
            (TxAction::EstablishSeller { .. }, Phase::Establishing) => Phase::SellerEstablished,
            (TxAction::EstablishSeller { .. }, Phase::BuyerEstablished) => Phase::Transmitting,
            (TxAction::Secret { secret }, Phase::Transmitting) => {
                let (Some(work_hash), Some(secret_hash)) = (tx.work_hash, tx.secret_hash) else {
                    unreachable!("transmitting implies the buyer established")
                };
                if tx::secret_hash(&work_hash, secret) != secret_hash {
                    return Err(CoreError::BadSecret);
                }
                Phase::Working
            }
            (TxAction::Result { .. }, Phase::Working) => Phase::Committed,
            (TxAction::Receipt { enc_result_hash }, Phase::Committed) => {
                let committed = tx.enc_result_hash.expect("committed implies a result hash");
                if *enc_result_hash != committed {
                    return Err(CoreError::BadReceipt { found: *enc_result_hash, committed });
                }
                Phase::Unverified
            }
            (TxAction::Accept, Phase::Unverified) => Phase::Finished,
            (TxAction::RejectResult, Phase::Unverified | Phase::Committed) => {
                // The dispute deposit is blocked now, so a verdict against the buyer can
                // always be paid; refused before anything changes.
                let deposit = tx::dispute_fee(tx.price_sat);
                // A party has an account (it placed a bid), so `funded` does not matter.
                let (available, _) = self.ledger.balance(signer, false);
                if available < deposit {
                    return Err(CoreError::InsufficientFunds {
                        need: deposit.0,
                        available: available.0,
                    });
                }
                Phase::ResultDisputed
            }
            (TxAction::RejectWork { .. }, Phase::Transmitting | Phase::Working) => {
                Phase::WorkDisputed
            }
            _ => return Err(wrong()),
        };
        assert!(phase.may_follow(next), "phase machine bug: {phase} -> {next}");
        let old_deadline = tx.deadline_ms;
        let new_deadline = match next {
            Phase::BuyerEstablished | Phase::SellerEstablished => old_deadline,
            // Each deadline counts from the previous one (PROTOCOL §4).
            p => self
                .rules
                .deadlines
                .for_phase(p)
                .map(|s| old_deadline.expect("open tx has a deadline") + s * 1000),
        };
        let v = self.bump(id);
        let now = self.now_ms;
        let tx = self.txs.get_mut(id).expect("exists");
        match action {
            TxAction::EstablishBuyer { work_hash, secret_hash } => {
                tx.work_hash = Some(*work_hash);
                tx.secret_hash = Some(*secret_hash);
            }
            TxAction::EstablishSeller { worker_url } => tx.worker_url = Some(worker_url.clone()),
            TxAction::Secret { secret } => {
                let auth = bitwrk_protocol::transfer::transfer_auth(&Hash32(*secret));
                self.transfer_auths.insert(id.clone(), auth);
            }
            TxAction::Accept | TxAction::Receipt { .. } => {}
            TxAction::RejectResult => {
                let deposit = tx::dispute_fee(tx.price_sat);
                tx.dispute_deposit_sat = deposit;
                let buyer = tx.buyer.clone();
                self.ledger.block(&buyer, deposit).expect("checked above");
            }
            TxAction::Result { enc_result_hash, result_key } => {
                tx.enc_result_hash = Some(*enc_result_hash);
                self.result_keys.insert(id.clone(), *result_key);
            }
            TxAction::RejectWork { reason } => tx.reason = Some(*reason),
        }
        tx.phase = next;
        tx.version = v;
        tx.deadline_ms = new_deadline;
        tx.history.push(PhaseEntry { phase: next, at_ms: now, note: None });
        if old_deadline != new_deadline {
            if let Some(d) = old_deadline {
                self.deadlines.remove(&(d, DeadlineKind::TxPhase, id.clone()));
            }
            if let Some(d) = new_deadline {
                self.deadlines.insert((d, DeadlineKind::TxPhase, id.clone()));
            }
        }
        match next {
            Phase::Finished => self.settle(id, Settlement::PaidSeller),
            Phase::WorkDisputed => self.settle(id, Settlement::RefundedBuyer),
            _ => {}
        }
        let view = self.txs[id].clone();
        if next == Phase::Unverified {
            let result_key = Hash32(self.result_keys[id]);
            return Ok(Answer::Receipt(Box::new(ReceiptAnswer { tx: view, result_key })));
        }
        Ok(Answer::Tx(view))
    }

    /// Decide a dispute by the shell's check of the evidence (see [`Command::Verdict`]):
    /// one settlement, the deposit back to the buyer or to the fee account.
    fn verdict(
        &mut self,
        id: &Id,
        enc_result_hash: &Hash32,
        seller_fault: Option<&str>,
    ) -> Result<Answer, CoreError> {
        let tx = self.txs.get(id).ok_or_else(|| CoreError::UnknownTx(id.clone()))?;
        if let Some(settlement) = tx.settlement {
            return Err(CoreError::TxClosed { tx: id.clone(), settlement });
        }
        if tx.phase != Phase::ResultDisputed {
            return Err(CoreError::WrongPhase { action: "evidence", phase: tx.phase });
        }
        let committed = tx.enc_result_hash.expect("a disputed result has a hash");
        if *enc_result_hash != committed {
            return Err(CoreError::WrongEvidence { found: *enc_result_hash, committed });
        }
        let how = match seller_fault {
            Some(_) => Settlement::DisputeSellerFault,
            None => Settlement::DisputeBuyerFault,
        };
        if let Some(d) = tx.deadline_ms {
            self.deadlines.remove(&(d, DeadlineKind::TxPhase, id.clone()));
        }
        self.settle(id, how);
        let v = self.bump(id);
        let now = self.now_ms;
        let tx = self.txs.get_mut(id).expect("exists");
        tx.deadline_ms = None;
        tx.version = v;
        let note = match seller_fault {
            Some(why) => format!("evidence: the seller is at fault ({why}); buyer refunded"),
            None => "evidence: the result opens and meets the manifest; seller paid, buyer \
                     pays the dispute fee"
                .to_string(),
        };
        tx.history.push(PhaseEntry { phase: Phase::ResultDisputed, at_ms: now, note: Some(note) });
        Ok(Answer::Tx(tx.clone()))
    }

    /// What the shell needs to check the evidence of a disputed transaction; none unless
    /// the transaction is in `result_disputed` and unsettled.
    pub fn dispute(&self, id: &Id) -> Option<Dispute> {
        let tx = self.txs.get(id)?;
        if tx.phase != Phase::ResultDisputed || tx.settlement.is_some() {
            return None;
        }
        Some(Dispute {
            key: *self.result_keys.get(id)?,
            enc_result_hash: tx.enc_result_hash?,
            article: tx.article,
            transfer_auth: *self.transfer_auths.get(id)?,
        })
    }

    /// Every signed message's own checks: made for this exchange, not expired at
    /// `now_ms`, not valid too far ahead.
    fn check_envelope(&self, msg: &Message, now_ms: u64) -> Result<(), CoreError> {
        if msg.exchange != self.rules.exchange_id {
            return Err(CoreError::WrongExchange {
                found: msg.exchange.clone(),
                ours: self.rules.exchange_id.clone(),
            });
        }
        let now_s = now_ms / 1000;
        if msg.valid_until < now_s {
            return Err(CoreError::Expired { valid_until: msg.valid_until, now_s });
        }
        if msg.valid_until > now_s + VALID_AHEAD_S_MAX {
            return Err(CoreError::TooFarAhead { valid_until: msg.valid_until, now_s });
        }
        Ok(())
    }

    /// The buyer's signed read of the result key (`op=key`, `POST /v1/tx/{id}/key`): only
    /// for the buyer, only once it signed the receipt. A read: nothing changes, no nonce
    /// is remembered (resending it is harmless).
    pub fn key_read(
        &self,
        signer: &Address,
        msg: &Message,
        url_tx: &Id,
        now_ms: u64,
    ) -> Result<KeyView, CoreError> {
        self.check_envelope(msg, now_ms.max(self.now_ms))?;
        let Operation::Key { tx: id } = &msg.op else {
            return Err(CoreError::WrongOp { expected: "key", found: msg.op.name() });
        };
        if id != url_tx {
            return Err(CoreError::IdMismatch {
                in_message: id.to_string(),
                in_url: url_tx.to_string(),
            });
        }
        let tx = self.txs.get(id).ok_or_else(|| CoreError::UnknownTx(id.clone()))?;
        if tx.buyer != *signer {
            return Err(CoreError::NotParty {
                signer: signer.clone(),
                role: "buyer",
                tx: id.clone(),
            });
        }
        // After the receipt; or once a dispute over a result that was never received went
        // against the buyer (the seller's evidence showed a good result, which it paid).
        let released = tx.receipted() || tx.settlement == Some(Settlement::DisputeBuyerFault);
        match (released, self.result_keys.get(id), tx.enc_result_hash) {
            (true, Some(k), Some(h)) => {
                Ok(KeyView { tx: id.clone(), enc_result_hash: h, result_key: Hash32(*k) })
            }
            _ => Err(CoreError::WrongPhase { action: "key", phase: tx.phase }),
        }
    }

    fn publish(
        &mut self,
        publisher: &Address,
        manifest: &Manifest,
        article: Hash32,
        module_sha256: Hash32,
        size: u64,
    ) -> Result<Applied, CoreError> {
        // The documented cap on the canonical form bounds every field (a 30 MiB version
        // string was accepted before: issue 13).
        let manifest_bytes = manifest.canonical_json().len();
        if manifest_bytes > MANIFEST_BYTES_MAX && !self.replaying {
            return Err(CoreError::BadManifest(format!(
                "the canonical manifest has {manifest_bytes} bytes, at most {MANIFEST_BYTES_MAX}"
            )));
        }
        manifest.validate().map_err(|e| CoreError::BadManifest(e.to_string()))?;
        if manifest.id() != article {
            return Err(CoreError::BadManifest(format!(
                "the message names article {article}, the manifest's id is {}",
                manifest.id()
            )));
        }
        match manifest.runtime {
            Runtime::Wasm => {
                if manifest.module_sha256 != Some(module_sha256) {
                    return Err(CoreError::BadManifest(
                        "the message's module_sha256 differs from the manifest's".into(),
                    ));
                }
                if size == 0 || size > MODULE_BYTES_MAX as u64 {
                    return Err(CoreError::BadManifest(format!(
                        "module size must be 1..={MODULE_BYTES_MAX}"
                    )));
                }
            }
            Runtime::NativeBlender { .. } => {
                if module_sha256 != Hash32::of(b"") || size != 0 {
                    return Err(CoreError::BadManifest(
                        "a native article has no module: module_sha256 must be SHA256(\"\") and size 0".into(),
                    ));
                }
            }
        }
        if let Some(existing) = self.articles.get(&article) {
            return Ok(Applied { answer: Answer::Article(existing.clone()), changed_state: false });
        }
        if self.articles.len() >= ARTICLES_MAX {
            return Err(CoreError::RegistryFull);
        }
        let (count, bytes) = self.publishers.get(publisher).copied().unwrap_or((0, 0));
        // size <= MODULE_BYTES_MAX (checked above), so the sum cannot overflow.
        let new_bytes = bytes + size + manifest_bytes as u64;
        if !self.replaying
            && (count >= ARTICLES_PER_PUBLISHER_MAX || new_bytes > PUBLISHER_BYTES_MAX)
        {
            return Err(CoreError::QuotaExceeded { publisher: publisher.clone(), count, bytes });
        }
        self.publishers.insert(publisher.clone(), (count + 1, new_bytes));
        let entry = ArticleEntry {
            id: article,
            manifest: manifest.clone(),
            module_size: size,
            publisher: publisher.clone(),
            published_ms: self.now_ms,
        };
        self.articles.insert(article, entry.clone());
        Ok(Applied { answer: Answer::Article(entry), changed_state: true })
    }

    // ---- views ----

    pub fn bid(&self, id: &Id) -> Option<BidView> {
        self.bids.get(id).map(|b| b.view.clone())
    }

    pub fn tx(&self, id: &Id) -> Option<TxView> {
        self.txs.get(id).cloned()
    }

    pub fn article(&self, id: &Hash32) -> Option<ArticleEntry> {
        self.articles.get(id).cloned()
    }

    pub fn articles(&self) -> Vec<ArticleEntry> {
        self.articles.values().cloned().collect()
    }

    /// Up to `limit` articles in id order, after `after` (exclusive) if given: a page of
    /// `GET /v1/articles`, O(limit) however large the registry is.
    pub fn articles_page(&self, after: Option<&Hash32>, limit: usize) -> Vec<ArticleEntry> {
        use std::ops::Bound::{Excluded, Unbounded};
        let from = after.map_or(Unbounded, Excluded);
        self.articles.range((from, Unbounded)).take(limit).map(|(_, a)| a.clone()).collect()
    }

    /// Whether `address` has an account (it placed a bid before).
    pub fn knows_account(&self, address: &Address) -> bool {
        self.ledger.knows(address)
    }

    /// An account's balances; an account not seen yet shows the starting capital it
    /// would get if funded (PROTOCOL §3).
    pub fn account(&self, address: &Address) -> AccountView {
        let (available_sat, blocked_sat) = self.ledger.balance(address, true);
        let record = self.records.get(address).copied().unwrap_or_default();
        AccountView { address: address.clone(), available_sat, blocked_sat, record }
    }

    pub fn ledger_view(&self) -> LedgerView {
        LedgerView {
            accounts: self.ledger.accounts() as u64,
            created_sat: self.ledger.created(),
            available_sat: self.ledger.available_total(),
            blocked_sat: self.ledger.blocked_total(),
            fees_sat: self.ledger.fees(),
            open_bids: self.open_bids,
            open_txs: self.open_txs,
            bids_total: self.bids.len() as u64,
            txs_total: self.txs.len() as u64,
        }
    }

    /// Depth per price, last price, median time-to-match, and why resting bids rest.
    pub fn book(&self, article: &Hash32) -> Option<BookView> {
        self.articles.get(article)?;
        let empty = Book::default();
        let book = self.books.get(article).unwrap_or(&empty);
        let depth = |prices: &mut dyn Iterator<Item = u64>| {
            let mut levels: Vec<Level> = Vec::new();
            for p in prices {
                match levels.last_mut() {
                    Some(l) if l.price_sat.0 == p => l.count += 1,
                    _ => levels.push(Level { price_sat: Sat(p), count: 1 }),
                }
            }
            levels
        };
        let buys = depth(&mut book.buys.keys().map(|k| k.0.0));
        let sells = depth(&mut book.sells.keys().map(|k| k.0));
        let best_ask = sells.first().map(|l| l.price_sat.0);
        let best_bid = buys.first().map(|l| l.price_sat.0);
        let mut resting = Vec::new();
        let mut all = book.buys.values().chain(book.sells.values());
        for id in all.by_ref().take(BOOK_RESTING_SHOWN_MAX) {
            let b = &self.bids[id].view;
            let reason = match b.side {
                Side::Buy => match best_ask {
                    Some(a) => {
                        format!("no seller at or below {} sat; best ask {a} sat", b.price_sat.0)
                    }
                    None => format!("no seller at or below {} sat; no sell bids", b.price_sat.0),
                },
                Side::Sell => match best_bid {
                    Some(a) => {
                        format!("no buyer at or above {} sat; best bid {a} sat", b.price_sat.0)
                    }
                    None => format!("no buyer at or above {} sat; no buy bids", b.price_sat.0),
                },
            };
            resting.push(RestingBid {
                id: id.clone(),
                side: b.side,
                price_sat: b.price_sat,
                reason,
            });
        }
        let median_time_to_match_ms = if book.match_waits_ms.is_empty() {
            None
        } else {
            let mut w: Vec<u64> = book.match_waits_ms.iter().copied().collect();
            w.sort_unstable();
            Some(w[w.len() / 2])
        };
        Some(BookView {
            article: *article,
            buys,
            sells,
            last_price_sat: book.last_price,
            median_time_to_match_ms,
            resting,
        })
    }

    /// The full consistency check (O(state)): ledger sums recomputed from scratch, every
    /// account's blocked money equals its open buy bids plus unsettled escrow, books hold
    /// exactly the open bids and never cross. Tests run it after every step; the shell
    /// runs it after loading the log.
    pub fn check_full(&self) {
        self.ledger.assert_conserved();
        self.ledger.assert_sums();
        let mut expect_blocked: HashMap<&Address, u64> = HashMap::default();
        let mut open = 0;
        let mut open_by: HashMap<&Address, u32> = HashMap::default();
        for b in self.bids.values() {
            if b.view.state == BidState::Open {
                open += 1;
                *expect_blocked.entry(&b.view.owner).or_default() += b.view.blocked_sat.0;
                *open_by.entry(&b.view.owner).or_default() += 1;
            }
        }
        assert_eq!(open_by.len(), self.open_bids_by.len(), "accounts with open bids");
        for (addr, n) in open_by {
            assert_eq!(self.open_bids_by.get(addr), Some(&n), "open bids of {addr}");
        }
        let mut open_txs = 0;
        for t in self.txs.values() {
            if t.settlement.is_none() {
                open_txs += 1;
                *expect_blocked.entry(&t.buyer).or_default() +=
                    t.price_sat.0 + t.fee_sat.0 + t.dispute_deposit_sat.0;
            }
            assert_eq!(t.settlement.is_none(), t.deadline_ms.is_some() && !t.phase.is_terminal());
        }
        assert_eq!(open, self.open_bids, "open bid count");
        assert_eq!(open_txs, self.open_txs, "open tx count");
        for (addr, blocked) in self.ledger.iter() {
            assert_eq!(
                blocked.0,
                expect_blocked.get(addr).copied().unwrap_or(0),
                "blocked money of {addr} differs from its open bids and escrow"
            );
        }
        let in_books: usize = self.books.values().map(|b| b.buys.len() + b.sells.len()).sum();
        assert_eq!(in_books as u64, self.open_bids, "books hold exactly the open bids");
        // Not crossed: every buy/sell pair at matching prices is one the buy excludes.
        for book in self.books.values() {
            for (bk, bid) in &book.buys {
                let ex = &self.bids[bid].exclude;
                for (_, sid) in book.sells.iter().take_while(|(sk, _)| sk.0 <= bk.0.0) {
                    assert!(ex.contains(&self.bids[sid].view.owner), "book is crossed");
                }
            }
        }
    }
}

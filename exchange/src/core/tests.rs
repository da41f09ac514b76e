//! Core tests: scenario checks (one line per case) and a property test that runs random
//! bid/cancel/advance/action/replay sequences against a deliberately simple model.

use std::sync::LazyLock;

use bitwrk_protocol::api::{BidState, Deadlines};
use bitwrk_protocol::message::{Message, Operation};
use bitwrk_protocol::{
    Hash32, Id, Manifest, Phase, PrivateKey, ReasonCode, Sat, Settlement, Side, TxAction, tx,
};
use proptest::prelude::*;

use super::*;

const EX: &str = "xtest";
const CAPITAL: u64 = 10_000;
const FEE_BPS: u32 = 300;
const LIFETIME_MS: u64 = 120_000;

static KEYS: LazyLock<Vec<PrivateKey>> = LazyLock::new(|| {
    (1..=4u8).map(|i| PrivateKey::from_secret_bytes(&[i; 32], true).unwrap()).collect()
});

fn rules() -> Rules {
    Rules {
        exchange_id: EX.into(),
        fee_bps: FEE_BPS,
        bid_lifetime_ms: LIFETIME_MS,
        deadlines: Deadlines::default(),
        starting_capital: Sat(CAPITAL),
    }
}

fn manifest() -> Manifest {
    Manifest::from_toml(
        r#"
name = "t"
version = "1.0.0"
runtime = "native:blender-3.4"
[[inputs]]
name = "i"
media_type = "text/plain"
max_bytes = 10
[[outputs]]
name = "o"
media_type = "text/plain"
max_bytes = 10
[limits]
fuel = 1
memory_bytes = 65536
wall_ms = 1
"#,
    )
    .unwrap()
}

/// A test harness: a core with one published article, and signed-command helpers.
struct T {
    core: Core,
    /// Every accepted state-changing command with its time: what the shell logs.
    log: Vec<(Command, u64)>,
    now: u64,
    nonce: u128,
    article: Hash32,
    n: u64,
}

impl T {
    fn new() -> T {
        let mut t = T {
            core: Core::new(rules()),
            log: Vec::new(),
            now: 1_000_000,
            nonce: 0,
            article: manifest().id(),
            n: 0,
        };
        let m = manifest();
        let op = Operation::Publish { article: m.id(), module_sha256: Hash32::of(b""), size: 0 };
        let signed = t.signed(0, op);
        t.apply(&Command::Publish { signed, manifest: m }).unwrap();
        t
    }

    /// Apply at the harness's time and log it as the shell would.
    fn apply(&mut self, cmd: &Command) -> Result<Applied, CoreError> {
        let r = self.core.apply(cmd, self.now);
        if let Ok(a) = &r
            && a.changed_state
        {
            self.log.push((cmd.clone(), self.core.now_ms()));
        }
        r
    }

    /// Rebuild a core from the log (as a restart does) and check it equals this one.
    fn check_replay(&self) {
        let mut again = Core::new(rules());
        for (cmd, now) in &self.log {
            again.apply(cmd, *now).expect("a logged command applies again");
        }
        again.advance(self.core.now_ms());
        again.check_full();
        assert_eq!(again.ledger_view(), self.core.ledger_view());
        for (id, b) in &self.core.bids {
            assert_eq!(again.bid(id).as_ref(), Some(&b.view), "bid {id} after replay");
        }
        for (id, t) in &self.core.txs {
            assert_eq!(again.tx(id).as_ref(), Some(t), "tx {id} after replay");
        }
        assert_eq!(again.articles(), self.core.articles());
        assert_eq!(again.next_deadline_ms(), self.core.next_deadline_ms());
    }

    fn signed(&mut self, who: usize, op: Operation) -> Signed {
        self.nonce += 1;
        let msg = Message {
            exchange: EX.into(),
            op,
            nonce: self.nonce.to_le_bytes(),
            valid_until: self.now / 1000 + 300,
        };
        Signed { signer: KEYS[who].address(), text: msg.encode() }
    }

    fn bid_cmd(&mut self, who: usize, side: Side, price: u64) -> Command {
        let op =
            Operation::Bid { article: self.article, side, price: Sat(price), exclude: Vec::new() };
        let signed = self.signed(who, op);
        self.n += 1;
        Command::Bid {
            signed,
            bid_id: Id::new(format!("b{}", self.n)).unwrap(),
            tx_id: Id::new(format!("t{}", self.n)).unwrap(),
            funded: true,
        }
    }

    fn bid(&mut self, who: usize, side: Side, price: u64) -> Result<BidView, CoreError> {
        let cmd = self.bid_cmd(who, side, price);
        let r = self.apply(&cmd).map(|a| match a.answer {
            Answer::Bid(b) => b,
            other => panic!("{other:?}"),
        });
        self.core.check_full();
        r
    }

    fn act(&mut self, who: usize, tx: &Id, action: TxAction) -> Result<TxView, CoreError> {
        let signed = self.signed(who, Operation::Tx { tx: tx.clone(), action });
        let r = self.apply(&Command::Tx { signed, tx: tx.clone() }).map(|a| match a.answer {
            Answer::Tx(t) => t,
            Answer::Receipt(r) => r.tx,
            other => panic!("{other:?}"),
        });
        self.core.check_full();
        r
    }

    /// The buyer's receipt; the answer's key.
    fn receipt(&mut self, who: usize, tx: &Id, enc: Hash32) -> Result<Hash32, CoreError> {
        let action = TxAction::Receipt { enc_result_hash: enc };
        let signed = self.signed(who, Operation::Tx { tx: tx.clone(), action });
        let r = self.apply(&Command::Tx { signed, tx: tx.clone() }).map(|a| match a.answer {
            Answer::Receipt(r) => r.result_key,
            other => panic!("{other:?}"),
        });
        self.core.check_full();
        r
    }

    /// The shell's verdict on evidence hashing to `enc`.
    fn verdict(&mut self, tx: &Id, enc: Hash32, fault: Option<&str>) -> Result<TxView, CoreError> {
        let cmd = Command::Verdict {
            tx: tx.clone(),
            enc_result_hash: enc,
            seller_fault: fault.map(str::to_string),
        };
        let r = self.apply(&cmd).map(|a| match a.answer {
            Answer::Tx(t) => t,
            other => panic!("{other:?}"),
        });
        self.core.check_full();
        r
    }

    /// The buyer's signed key read.
    fn key(&mut self, who: usize, tx: &Id) -> Result<Hash32, CoreError> {
        let signed = self.signed(who, Operation::Key { tx: tx.clone() });
        let msg = Message::parse(&signed.text).unwrap();
        self.core.key_read(&signed.signer, &msg, tx, self.now).map(|k| k.result_key)
    }

    /// A transaction between seller 1 and buyer 2 at `price`, driven to `committed`
    /// (the seller committed result `enc` with key `[7; 32]`).
    fn committed(&mut self, price: u64, enc: Hash32) -> Id {
        self.bid(1, Side::Sell, price).unwrap();
        let txid = self.bid(2, Side::Buy, price).unwrap().tx.unwrap();
        let work = Hash32::of(b"w");
        let secret = [3u8; 32];
        let secret_hash = tx::secret_hash(&work, &secret);
        self.act(2, &txid, TxAction::EstablishBuyer { work_hash: work, secret_hash }).unwrap();
        self.act(1, &txid, TxAction::EstablishSeller { worker_url: "https://s/".into() }).unwrap();
        self.act(1, &txid, TxAction::Secret { secret }).unwrap();
        let v = self
            .act(1, &txid, TxAction::Result { enc_result_hash: enc, result_key: [7; 32] })
            .unwrap();
        assert_eq!(v.phase, Phase::Committed);
        txid
    }

    fn record(&self, who: usize) -> Record {
        self.core.account(&KEYS[who].address()).record
    }

    fn avail(&self, who: usize) -> u64 {
        self.core.account(&KEYS[who].address()).available_sat.0
    }
}

/// Place bids in order as (who, side, price); check which bid each one matched (by its
/// index in the list) and at what price.
fn check_matches(bids: &[(usize, Side, u64)], expected: &[Option<(usize, u64)>]) {
    let mut t = T::new();
    let mut views = Vec::new();
    for (i, &(who, side, price)) in bids.iter().enumerate() {
        let v = t.bid(who, side, price).unwrap();
        let got = v.tx.as_ref().map(|txid| {
            let tx = t.core.tx(txid).unwrap();
            let other = if side == Side::Buy { &tx.sell_bid } else { &tx.buy_bid };
            let idx = views.iter().position(|b: &BidView| &b.id == other).unwrap();
            (idx, tx.price_sat.0)
        });
        assert_eq!(got, expected[i], "bid #{i} {side:?} at {price}");
        views.push(v);
    }
}

#[test]
fn price_time_priority_and_older_price() {
    use Side::*;
    // A buy meets the cheapest sell; the older bid's price is the trade price.
    check_matches(&[(0, Sell, 100), (1, Sell, 90), (2, Buy, 120)], &[None, None, Some((1, 90))]);
    // Among equal prices the older one matches first.
    check_matches(
        &[(0, Sell, 100), (1, Sell, 100), (2, Buy, 100), (3, Buy, 100)],
        &[None, None, Some((0, 100)), Some((1, 100))],
    );
    // A sell meets the highest buy at the buy's (older) price.
    check_matches(&[(0, Buy, 50), (1, Buy, 80), (2, Sell, 10)], &[None, None, Some((1, 80))]);
    // No cross, no match.
    check_matches(&[(0, Buy, 50), (1, Sell, 51)], &[None, None]);
}

#[test]
fn escrow_refund_of_difference_and_fees() {
    let mut t = T::new();
    t.bid(1, Side::Sell, 100).unwrap();
    // Buy at 1000 blocks 1000 + 30; matches at 100 → escrow 100 + 3, 927 back at once.
    let b = t.bid(2, Side::Buy, 1000).unwrap();
    assert_eq!(b.state, BidState::Matched);
    assert_eq!(b.blocked_sat, Sat(103));
    assert_eq!(t.avail(2), CAPITAL - 103);
    let acct = t.core.account(&KEYS[2].address());
    assert_eq!(acct.blocked_sat, Sat(103));
    // Fee rounds up: 101 sat at 3 % is 3.03 → 4.
    t.bid(1, Side::Sell, 101).unwrap();
    let b = t.bid(3, Side::Buy, 101).unwrap();
    assert_eq!(b.blocked_sat, Sat(105));
    // Not enough money.
    assert_eq!(t.bid(3, Side::Buy, CAPITAL).unwrap_err().code(), "insufficient_funds");
    // A refused first bid leaves no trace: no account is credited (replay must agree).
    let accounts = t.core.ledger_view().accounts;
    assert_eq!(t.bid(0, Side::Buy, CAPITAL).unwrap_err().code(), "insufficient_funds");
    assert_eq!(t.core.ledger_view().accounts, accounts);
    t.check_replay();
}

#[test]
fn full_trade_pays_seller_and_fee() {
    let mut t = T::new();
    t.bid(1, Side::Sell, 1000).unwrap();
    let b = t.bid(2, Side::Buy, 1000).unwrap();
    let txid = b.tx.unwrap();
    let work = Hash32::of(b"work");
    let secret = [9u8; 32];
    assert_eq!(t.act(1, &txid, TxAction::Accept).unwrap_err().code(), "not_party");
    assert_eq!(t.act(2, &txid, TxAction::Accept).unwrap_err().code(), "wrong_phase");
    let v = t
        .act(
            2,
            &txid,
            TxAction::EstablishBuyer {
                work_hash: work,
                secret_hash: tx::secret_hash(&work, &secret),
            },
        )
        .unwrap();
    assert_eq!(v.phase, Phase::BuyerEstablished);
    let v = t
        .act(1, &txid, TxAction::EstablishSeller { worker_url: "http://127.0.0.1:1/".into() })
        .unwrap();
    assert_eq!(v.phase, Phase::Transmitting);
    assert_eq!(
        v.deadline_ms,
        Some(v.matched_ms + 180_000),
        "deadlines count from the previous deadline"
    );
    assert_eq!(
        t.act(1, &txid, TxAction::Secret { secret: [8; 32] }).unwrap_err().code(),
        "bad_secret"
    );
    t.act(1, &txid, TxAction::Secret { secret }).unwrap();
    let enc = Hash32::of(b"enc");
    let v = t.act(1, &txid, TxAction::Result { enc_result_hash: enc, result_key: [1; 32] });
    assert_eq!(v.unwrap().phase, Phase::Committed);
    // The key is in no view and not readable before the receipt.
    assert!(!json(&t.core.tx(&txid).unwrap()).contains(&hex::encode([1u8; 32])));
    assert_eq!(t.key(2, &txid).unwrap_err().code(), "wrong_phase");
    assert_eq!(t.act(2, &txid, TxAction::Accept).unwrap_err().code(), "wrong_phase");
    let other = Hash32::of(b"other");
    assert_eq!(t.receipt(2, &txid, other).unwrap_err().code(), "bad_receipt");
    assert_eq!(t.receipt(1, &txid, enc).unwrap_err().code(), "not_party");
    assert_eq!(t.receipt(2, &txid, enc).unwrap(), Hash32([1; 32]));
    assert_eq!(t.key(2, &txid).unwrap(), Hash32([1; 32]));
    assert_eq!(t.key(1, &txid).unwrap_err().code(), "not_party");
    assert!(!json(&t.core.tx(&txid).unwrap()).contains(&hex::encode([1u8; 32])));
    let v = t.act(2, &txid, TxAction::Accept).unwrap();
    assert_eq!((v.phase, v.settlement), (Phase::Finished, Some(Settlement::PaidSeller)));
    assert_eq!(t.avail(1), CAPITAL + 1000);
    assert_eq!(t.avail(2), CAPITAL - 1030);
    assert_eq!(t.core.ledger_view().fees_sat, Sat(30));
    assert_eq!(t.act(2, &txid, TxAction::Accept).unwrap_err().code(), "tx_closed");
    assert_eq!((t.record(1).trades_sold, t.record(2).trades_bought), (1, 1));
    t.check_replay();
}

/// Every dispute ends in one settlement decided by the evidence; the deposit follows the
/// verdict; the records count it. (receipted first?, seller at fault?) → settlement.
#[test]
fn disputes_are_decided_by_evidence() {
    let cases: &[(bool, bool, Settlement)] = &[
        (true, true, Settlement::DisputeSellerFault),
        (true, false, Settlement::DisputeBuyerFault),
        (false, true, Settlement::DisputeSellerFault),
        (false, false, Settlement::DisputeBuyerFault),
    ];
    for &(receipted, fault, expect) in cases {
        let mut t = T::new();
        let enc = Hash32::of(b"e");
        let txid = t.committed(1000, enc);
        if receipted {
            t.receipt(2, &txid, enc).unwrap();
        }
        assert_eq!(t.verdict(&txid, enc, None).unwrap_err().code(), "wrong_phase");
        let v = t.act(2, &txid, TxAction::RejectResult).unwrap();
        assert_eq!((v.phase, v.dispute_deposit_sat), (Phase::ResultDisputed, Sat(100)));
        assert_eq!(t.avail(2), CAPITAL - 1030 - 100, "the deposit is blocked");
        // Before a verdict the key goes only to a buyer that signed its receipt.
        assert_eq!(t.key(2, &txid).is_ok(), receipted);
        let wrong = Hash32::of(b"not it");
        assert_eq!(t.verdict(&txid, wrong, None).unwrap_err().code(), "wrong_evidence");
        let v = t.verdict(&txid, enc, fault.then_some("the key opens nothing")).unwrap();
        assert_eq!(v.settlement, Some(expect), "receipted {receipted} fault {fault}");
        assert_eq!(t.verdict(&txid, enc, None).unwrap_err().code(), "tx_closed");
        let (seller, buyer, fees) = if fault { (0, 0, 0) } else { (1000, 1130, 130) };
        assert_eq!(t.avail(1), CAPITAL + seller);
        assert_eq!(t.avail(2), CAPITAL - buyer);
        assert_eq!(t.core.ledger_view().fees_sat, Sat(fees));
        let (b, s) = (t.record(2), t.record(1));
        assert_eq!((b.disputes_won, b.disputes_lost, s.seller_faults), {
            if fault { (1, 0, 1) } else { (0, 1, 0) }
        });
        // A buyer that lost a dispute paid: it may read the key.
        assert_eq!(t.key(2, &txid).is_ok(), receipted || !fault);
        t.check_replay();
    }
}

#[test]
fn a_dispute_needs_the_deposit() {
    let mut t = T::new();
    let enc = Hash32::of(b"e");
    // Price + fee leave less than the 10 % deposit.
    let price = CAPITAL * 100 / 103 - 1;
    let txid = t.committed(price, enc);
    t.receipt(2, &txid, enc).unwrap();
    let before = t.core.tx(&txid).unwrap();
    assert_eq!(t.act(2, &txid, TxAction::RejectResult).unwrap_err().code(), "insufficient_funds");
    assert_eq!(t.core.tx(&txid).unwrap(), before, "a refused dispute changes nothing");
}

#[test]
fn deadlines_refund_or_pay() {
    // Actions from the start (by index below), the settlement when the phase's deadline
    // passes, and the buyer's record entry it makes.
    let cases: &[(&[usize], Settlement)] = &[
        (&[], Settlement::RefundedBuyer),                     // establishing
        (&[0], Settlement::RefundedBuyer),                    // buyer_established
        (&[0, 1], Settlement::RefundedBuyer),                 // transmitting
        (&[0, 1, 2], Settlement::RefundedBuyer),              // working
        (&[0, 1, 2, 3], Settlement::Lapsed),                  // committed: no receipt
        (&[0, 1, 2, 3, 4], Settlement::PaidSeller),           // unverified
        (&[0, 1, 2, 3, 4, 5], Settlement::DisputeBuyerFault), // disputed after the receipt
        (&[0, 1, 2, 3, 5], Settlement::DisputeSellerFault),   // "never delivered", no evidence
    ];
    for &(steps, expect) in cases {
        let mut t = T::new();
        t.bid(1, Side::Sell, 1000).unwrap();
        let txid = t.bid(2, Side::Buy, 1000).unwrap().tx.unwrap();
        let work = Hash32::of(b"w");
        let secret = [3u8; 32];
        let enc = Hash32::of(b"e");
        let actions: Vec<(usize, TxAction)> = vec![
            (
                2,
                TxAction::EstablishBuyer {
                    work_hash: work,
                    secret_hash: tx::secret_hash(&work, &secret),
                },
            ),
            (1, TxAction::EstablishSeller { worker_url: "https://s/".into() }),
            (1, TxAction::Secret { secret }),
            (1, TxAction::Result { enc_result_hash: enc, result_key: [0; 32] }),
            (2, TxAction::Receipt { enc_result_hash: enc }),
            (2, TxAction::RejectResult),
        ];
        for &i in steps {
            t.act(actions[i].0, &txid, actions[i].1.clone()).unwrap();
        }
        let before = t.core.tx(&txid).unwrap();
        let deadline = before.deadline_ms.unwrap();
        t.core.advance(deadline - 1);
        assert_eq!(t.core.tx(&txid).unwrap().settlement, None);
        t.core.advance(deadline);
        let after = t.core.tx(&txid).unwrap();
        assert_eq!(after.settlement, Some(expect), "after {steps:?} in {}", before.phase);
        assert_eq!(after.phase, before.phase);
        assert!(after.version > before.version);
        let split = expect.split(after.price_sat, after.fee_sat, after.dispute_deposit_sat);
        assert_eq!(t.avail(1), CAPITAL + split.seller.0);
        assert_eq!(t.avail(2), CAPITAL - 1030 - after.dispute_deposit_sat.0 + split.buyer.0);
        assert_eq!(t.record(2).lapsed, u64::from(expect == Settlement::Lapsed));
        t.core.check_full();
    }
}

/// A buy bid's `exclude` list keeps it from matching those sellers, in both directions.
#[test]
fn excluded_sellers_are_not_matched() {
    let mut t = T::new();
    let excl = |t: &mut T, who: usize, price: u64, exclude: Vec<Address>| {
        let op = Operation::Bid { article: t.article, side: Side::Buy, price: Sat(price), exclude };
        let signed = t.signed(who, op);
        t.n += 1;
        let cmd = Command::Bid {
            signed,
            bid_id: Id::new(format!("b{}", t.n)).unwrap(),
            tx_id: Id::new(format!("t{}", t.n)).unwrap(),
            funded: true,
        };
        let r = t.apply(&cmd).unwrap();
        t.core.check_full();
        let Answer::Bid(b) = r.answer else { panic!() };
        b
    };
    t.bid(1, Side::Sell, 100).unwrap();
    t.bid(3, Side::Sell, 120).unwrap();
    // The cheaper seller 1 is excluded: seller 3 gets the trade.
    let b = excl(&mut t, 2, 200, vec![KEYS[1].address()]);
    let tx = t.core.tx(b.tx.as_ref().unwrap()).unwrap();
    assert_eq!((tx.seller.clone(), tx.price_sat), (KEYS[3].address(), Sat(120)));
    // A buy that excludes the only seller rests; a new sell from that seller passes it by.
    let b = excl(&mut t, 2, 200, vec![KEYS[1].address()]);
    assert_eq!(b.state, BidState::Open);
    assert_eq!(t.bid(1, Side::Sell, 50).unwrap().state, BidState::Open);
    assert_eq!(t.bid(3, Side::Sell, 50).unwrap().state, BidState::Matched);
    t.check_replay();
}

#[test]
fn bids_expire_and_cancel_unblocks() {
    let mut t = T::new();
    let b = t.bid(2, Side::Buy, 100).unwrap();
    assert_eq!(t.avail(2), CAPITAL - 103);
    t.core.advance(b.expires_ms);
    assert_eq!(t.core.bid(&b.id).unwrap().state, BidState::Expired);
    assert_eq!(t.avail(2), CAPITAL);
    t.now = b.expires_ms;
    let b = t.bid(2, Side::Buy, 100).unwrap();
    let signed = t.signed(1, Operation::Cancel { bid: b.id.clone() });
    assert_eq!(
        t.core.apply(&Command::Cancel { signed, bid: b.id.clone() }, t.now).unwrap_err().code(),
        "not_owner"
    );
    let signed = t.signed(2, Operation::Cancel { bid: b.id.clone() });
    t.core.apply(&Command::Cancel { signed: signed.clone(), bid: b.id.clone() }, t.now).unwrap();
    assert_eq!(t.avail(2), CAPITAL);
    // The same envelope again: the first answer, nothing changes.
    let again = t
        .core
        .apply(&Command::Cancel { signed: signed.clone(), bid: b.id.clone() }, t.now)
        .unwrap();
    assert!(!again.changed_state);
    // Nonce memory answers only at the endpoint and for the id the envelope was made for.
    let elsewhere = Command::Tx { signed: signed.clone(), tx: b.id.clone() };
    assert_eq!(t.core.apply(&elsewhere, t.now).unwrap_err().code(), "wrong_op");
    let other_id = Command::Cancel { signed: signed.clone(), bid: Id::new("b999").unwrap() };
    assert_eq!(t.core.apply(&other_id, t.now).unwrap_err().code(), "id_mismatch");
    let signed = t.signed(2, Operation::Cancel { bid: b.id.clone() });
    assert_eq!(
        t.core.apply(&Command::Cancel { signed, bid: b.id }, t.now).unwrap_err().code(),
        "bid_not_open"
    );
}

#[test]
fn message_checks() {
    let mut t = T::new();
    let cmd = t.bid_cmd(1, Side::Sell, 10);
    // Wrong endpoint for the op.
    let Command::Bid { signed, .. } = cmd.clone() else { unreachable!() };
    let wrong = Command::Cancel { signed: signed.clone(), bid: Id::new("b1").unwrap() };
    assert_eq!(t.core.apply(&wrong, t.now).unwrap_err().code(), "wrong_op");
    // Expired and too far ahead.
    assert_eq!(t.core.apply(&cmd, t.now + 301_000).unwrap_err().code(), "expired");
    let mut m = Message::parse(&signed.text).unwrap();
    m.valid_until = t.now / 1000 + 601;
    let far = Command::Bid {
        signed: Signed { text: m.encode(), ..signed.clone() },
        bid_id: Id::new("bx").unwrap(),
        tx_id: Id::new("tx").unwrap(),
        funded: true,
    };
    let mut t2 = T::new();
    assert_eq!(t2.core.apply(&far, t2.now).unwrap_err().code(), "too_far_ahead");
    // Another exchange.
    m.valid_until = t.now / 1000 + 10;
    m.exchange = "other".into();
    let other = Command::Bid {
        signed: Signed { text: m.encode(), ..signed.clone() },
        bid_id: Id::new("by").unwrap(),
        tx_id: Id::new("ty").unwrap(),
        funded: true,
    };
    assert_eq!(t2.core.apply(&other, t2.now).unwrap_err().code(), "wrong_exchange");
    // Same nonce, other text: 409.
    let mut t3 = T::new();
    t3.core.apply(&cmd, t3.now).unwrap();
    let mut m = Message::parse(&signed.text).unwrap();
    m.op = Operation::Bid {
        article: t3.article,
        side: Side::Sell,
        price: Sat(11),
        exclude: Vec::new(),
    };
    let reused = Command::Bid {
        signed: Signed { text: m.encode(), ..signed },
        bid_id: Id::new("bz").unwrap(),
        tx_id: Id::new("tz").unwrap(),
        funded: true,
    };
    assert_eq!(t3.core.apply(&reused, t3.now).unwrap_err().code(), "nonce_reused");
    // Unpublished article, bad price.
    let mut t4 = T::new();
    t4.article = Hash32::of(b"nothing");
    assert_eq!(t4.bid(1, Side::Sell, 5).unwrap_err().code(), "unknown_article");
    let mut t5 = T::new();
    assert_eq!(t5.bid(1, Side::Sell, 0).unwrap_err().code(), "bad_price");
}

#[test]
fn book_view_explains() {
    let mut t = T::new();
    t.bid(1, Side::Sell, 1200).unwrap();
    t.bid(1, Side::Sell, 1200).unwrap();
    t.bid(2, Side::Buy, 900).unwrap();
    let b = t.core.book(&t.article).unwrap();
    assert_eq!(b.sells, vec![Level { price_sat: Sat(1200), count: 2 }]);
    assert_eq!(b.buys, vec![Level { price_sat: Sat(900), count: 1 }]);
    let buy = b.resting.iter().find(|r| r.side == Side::Buy).unwrap();
    assert_eq!(buy.reason, "no seller at or below 900 sat; best ask 1200 sat");
    let sell = b.resting.iter().find(|r| r.side == Side::Sell).unwrap();
    assert_eq!(sell.reason, "no buyer at or above 1200 sat; best bid 900 sat");
    t.now += 5000;
    t.bid(3, Side::Buy, 1300).unwrap();
    let b = t.core.book(&t.article).unwrap();
    assert_eq!(b.last_price_sat, Some(Sat(1200)));
    assert_eq!(b.median_time_to_match_ms, Some(5000));
}

// ---------- the property test against a simple model ----------

#[derive(Debug, Clone)]
enum Op {
    Bid { who: usize, buy: bool, price: u64 },
    Cancel { who: usize, bid: usize },
    Advance { ms: u64 },
    Act { tx: usize, by_buyer: bool, kind: u8, smart: bool },
    Replay,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, any::<bool>(), 1..3000u64).prop_map(|(who, buy, price)| Op::Bid { who, buy, price }),
        1 => (0..4usize, any::<usize>()).prop_map(|(who, bid)| Op::Cancel { who, bid }),
        2 => prop_oneof![4 => 0..5_000u64, 1 => 0..400_000u64].prop_map(|ms| Op::Advance { ms }),
        6 => (any::<usize>(), any::<bool>(), 0..12u8, prop::bool::weighted(0.8))
            .prop_map(|(tx, by_buyer, kind, smart)| Op::Act { tx, by_buyer, kind, smart }),
        1 => Just(Op::Replay),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct MBid {
    owner: usize,
    buy: bool,
    price: u64,
    blocked: u64,
    state: BidState,
    expires: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct MTx {
    buyer: usize,
    seller: usize,
    price: u64,
    fee: u64,
    phase: Phase,
    deadline: u64,
    settled: Option<Settlement>,
    /// The buyer signed its receipt.
    receipted: bool,
    deposit: u64,
}

/// The model: vectors and linear scans, the rules written out as plainly as possible.
#[derive(Default)]
struct Model {
    seen: [bool; 4],
    avail: [u64; 4],
    blocked: [u64; 4],
    fees: u64,
    bids: Vec<MBid>,
    txs: Vec<MTx>,
    records: [Record; 4],
}

fn fee_of(price: u64) -> u64 {
    (price * FEE_BPS as u64).div_ceil(10_000)
}

/// A tenth of the price, rounded up, at least 1.
fn deposit_of(price: u64) -> u64 {
    price.div_ceil(10).max(1)
}

impl Model {
    fn advance(&mut self, now: u64) {
        // Fire in time order; at equal times bids before transactions (as the core).
        loop {
            let bid = self
                .bids
                .iter()
                .enumerate()
                .filter(|(_, b)| b.state == BidState::Open && b.expires <= now)
                .min_by_key(|(i, b)| (b.expires, *i));
            let tx = self
                .txs
                .iter()
                .enumerate()
                .filter(|(_, t)| t.settled.is_none() && t.deadline <= now)
                .min_by_key(|(i, t)| (t.deadline, *i));
            match (bid.map(|(i, b)| (b.expires, i)), tx.map(|(i, t)| (t.deadline, i))) {
                (Some((bt, bi)), Some((tt, _))) if bt <= tt => self.expire(bi),
                (Some((_, bi)), None) => self.expire(bi),
                (_, Some((_, ti))) => {
                    let t = &self.txs[ti];
                    let how = match t.phase {
                        Phase::Unverified => Settlement::PaidSeller,
                        Phase::Committed => Settlement::Lapsed,
                        Phase::ResultDisputed if t.receipted => Settlement::DisputeBuyerFault,
                        Phase::ResultDisputed => Settlement::DisputeSellerFault,
                        _ => Settlement::RefundedBuyer,
                    };
                    self.settle(ti, how);
                }
                (None, None) => break,
            }
        }
    }

    fn expire(&mut self, i: usize) {
        let b = &mut self.bids[i];
        b.state = BidState::Expired;
        self.blocked[b.owner] -= b.blocked;
        self.avail[b.owner] += b.blocked;
    }

    fn settle(&mut self, i: usize, how: Settlement) {
        self.txs[i].settled = Some(how);
        let t = self.txs[i].clone();
        let whole = t.price + t.fee + t.deposit;
        self.blocked[t.buyer] -= whole;
        let (seller, fees) = match how {
            Settlement::PaidSeller => (t.price, t.fee),
            Settlement::RefundedBuyer | Settlement::DisputeSellerFault => (0, 0),
            Settlement::Lapsed => (t.price / 2, t.fee / 2),
            Settlement::DisputeBuyerFault => (t.price, t.fee + t.deposit),
        };
        self.avail[t.seller] += seller;
        self.fees += fees;
        self.avail[t.buyer] += whole - seller - fees;
        self.records[t.buyer].trades_bought += 1;
        self.records[t.seller].trades_sold += 1;
        match how {
            Settlement::Lapsed => self.records[t.buyer].lapsed += 1,
            Settlement::DisputeBuyerFault => self.records[t.buyer].disputes_lost += 1,
            Settlement::DisputeSellerFault => {
                self.records[t.buyer].disputes_won += 1;
                self.records[t.seller].seller_faults += 1;
            }
            _ => {}
        }
    }

    fn bid(
        &mut self,
        who: usize,
        buy: bool,
        price: u64,
        now: u64,
    ) -> Result<Option<usize>, &'static str> {
        let blocked = if buy { price + fee_of(price) } else { 0 };
        let avail = if self.seen[who] { self.avail[who] } else { CAPITAL };
        if avail < blocked {
            return Err("insufficient_funds");
        }
        if !self.seen[who] {
            self.seen[who] = true;
            self.avail[who] = CAPITAL;
        }
        self.avail[who] -= blocked;
        self.blocked[who] += blocked;
        // Best counter bid: linear scan; lowest sell / highest buy, then oldest.
        let counter = self
            .bids
            .iter()
            .enumerate()
            .filter(|(_, b)| {
                b.state == BidState::Open
                    && b.buy != buy
                    && if buy { b.price <= price } else { b.price >= price }
            })
            .min_by_key(|(i, b)| (if buy { b.price } else { u64::MAX - b.price }, *i))
            .map(|(i, _)| i);
        self.bids.push(MBid {
            owner: who,
            buy,
            price,
            blocked,
            state: BidState::Open,
            expires: now + LIFETIME_MS,
        });
        let me = self.bids.len() - 1;
        let Some(c) = counter else { return Ok(None) };
        let p = self.bids[c].price;
        let (bi, si) = if buy { (me, c) } else { (c, me) };
        let escrow = p + fee_of(p);
        let (buyer, seller) = (self.bids[bi].owner, self.bids[si].owner);
        let refund = self.bids[bi].blocked - escrow;
        self.blocked[buyer] -= refund;
        self.avail[buyer] += refund;
        self.bids[bi].blocked = escrow;
        self.bids[bi].state = BidState::Matched;
        self.bids[si].state = BidState::Matched;
        self.txs.push(MTx {
            buyer,
            seller,
            price: p,
            fee: fee_of(p),
            phase: Phase::Establishing,
            deadline: now + 60_000,
            settled: None,
            receipted: false,
            deposit: 0,
        });
        Ok(Some(self.txs.len() - 1))
    }

    /// kinds: 0 est-buyer, 1 est-seller, 2 secret ok, 3 secret wrong, 4 result,
    /// 5 accept, 6 reject_result, 7 reject_work, 8 receipt, 9 receipt of another hash,
    /// 10 verdict "good result", 11 verdict "seller at fault".
    fn act(&mut self, i: usize, signer: usize, kind: u8) -> Result<(), &'static str> {
        let t = self.txs[i].clone();
        if kind < 10 {
            let party = if matches!(kind, 0 | 5 | 6 | 8 | 9) { t.buyer } else { t.seller };
            if party != signer {
                return Err("not_party");
            }
        }
        if t.settled.is_some() {
            return Err("tx_closed");
        }
        use Phase::*;
        let d = Deadlines::default();
        let (next, add) = match (kind, t.phase) {
            (0, Establishing) => (BuyerEstablished, 0),
            (0, SellerEstablished) => (Transmitting, d.transmitting_s),
            (1, Establishing) => (SellerEstablished, 0),
            (1, BuyerEstablished) => (Transmitting, d.transmitting_s),
            (2, Transmitting) => (Working, d.working_s),
            (3, Transmitting) => return Err("bad_secret"),
            (4, Working) => (Committed, d.committed_s),
            (8, Committed) => (Unverified, d.unverified_s),
            (9, Committed) => return Err("bad_receipt"),
            (5, Unverified) => (Finished, 0),
            (6, Unverified | Committed) => {
                let dep = deposit_of(t.price);
                if self.avail[t.buyer] < dep {
                    return Err("insufficient_funds");
                }
                self.avail[t.buyer] -= dep;
                self.blocked[t.buyer] += dep;
                self.txs[i].deposit = dep;
                (ResultDisputed, d.result_disputed_s)
            }
            (7, Transmitting | Working) => (WorkDisputed, 0),
            (10 | 11, ResultDisputed) => {
                let fault = kind == 11;
                let how = if fault {
                    Settlement::DisputeSellerFault
                } else {
                    Settlement::DisputeBuyerFault
                };
                self.settle(i, how);
                return Ok(());
            }
            _ => return Err("wrong_phase"),
        };
        self.txs[i].phase = next;
        self.txs[i].deadline += add * 1000;
        self.txs[i].receipted |= next == Unverified;
        match next {
            Finished => self.settle(i, Settlement::PaidSeller),
            WorkDisputed => self.settle(i, Settlement::RefundedBuyer),
            _ => {}
        }
        Ok(())
    }
}

/// The action the phase expects (mostly), so that random sequences reach the late
/// phases; `kind` picks among the choices a phase has.
fn smart_kind(phase: Phase, by_buyer: bool, kind: u8) -> u8 {
    match phase {
        Phase::Establishing => {
            if by_buyer {
                0
            } else {
                1
            }
        }
        Phase::BuyerEstablished => 1,
        Phase::SellerEstablished => 0,
        Phase::Transmitting | Phase::Working if kind == 7 => 7,
        Phase::Transmitting => 2,
        Phase::Working => 4,
        Phase::Committed if kind == 6 || kind == 9 => kind,
        Phase::Committed => 8,
        Phase::Unverified => {
            if by_buyer {
                5
            } else {
                6
            }
        }
        Phase::ResultDisputed => 10 + kind % 2,
        _ => kind,
    }
}

fn run_sequence(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut t = T::new();
    let mut m = Model::default();
    let mut bid_ids: Vec<Id> = Vec::new();
    let mut tx_ids: Vec<Id> = Vec::new();
    let work = Hash32::of(b"w");
    let secret = [5u8; 32];
    let enc = Hash32::of(b"enc");
    let mut last: Option<(Command, Answer, u64)> = None;
    for op in ops {
        match op {
            Op::Bid { who, buy, price } => {
                let side = if buy { Side::Buy } else { Side::Sell };
                let cmd = t.bid_cmd(who, side, price);
                m.advance(t.now);
                let got = t.apply(&cmd);
                let want = m.bid(who, buy, price, t.now);
                match (&got, want) {
                    (Ok(a), Ok(tx)) => {
                        let Answer::Bid(b) = &a.answer else { panic!() };
                        bid_ids.push(b.id.clone());
                        prop_assert_eq!(b.tx.is_some(), tx.is_some());
                        if let Some(txid) = &b.tx {
                            tx_ids.push(txid.clone());
                        }
                        let text = &cmd.signed().unwrap().text;
                        let valid_until = Message::parse(text).unwrap().valid_until;
                        last = Some((cmd, a.answer.clone(), valid_until));
                    }
                    (Err(e), Err(code)) => prop_assert_eq!(e.code(), code),
                    (g, w) => prop_assert!(false, "core {:?} model {:?}", g, w),
                }
            }
            Op::Cancel { who, bid } => {
                if bid_ids.is_empty() {
                    continue;
                }
                let i = bid % bid_ids.len();
                let id = bid_ids[i].clone();
                let signed = t.signed(who, Operation::Cancel { bid: id.clone() });
                m.advance(t.now);
                let got = t.apply(&Command::Cancel { signed, bid: id });
                let b = &m.bids[i];
                let want = if b.owner != who {
                    Err("not_owner")
                } else if b.state != BidState::Open {
                    Err("bid_not_open")
                } else {
                    Ok(())
                };
                match (&got, want) {
                    (Ok(_), Ok(())) => {
                        let b = &mut m.bids[i];
                        b.state = BidState::Cancelled;
                        m.blocked[b.owner] -= b.blocked;
                        m.avail[b.owner] += b.blocked;
                    }
                    (Err(e), Err(code)) => prop_assert_eq!(e.code(), code),
                    (g, w) => prop_assert!(false, "cancel: core {:?} model {:?}", g, w),
                }
            }
            Op::Advance { ms } => {
                t.now += ms;
                t.core.advance(t.now);
                m.advance(t.now);
            }
            Op::Act { tx, mut by_buyer, mut kind, smart } => {
                if tx_ids.is_empty() {
                    continue;
                }
                // Mostly act on the newest transactions, and mostly with the action the
                // phase expects, so that sequences reach the late phases.
                let i = if smart {
                    tx_ids.len() - 1 - tx % tx_ids.len().min(3)
                } else {
                    tx % tx_ids.len()
                };
                let id = tx_ids[i].clone();
                m.advance(t.now);
                let mt = m.txs[i].clone();
                if smart {
                    kind = smart_kind(mt.phase, by_buyer, kind);
                    by_buyer = matches!(kind, 0 | 5 | 6 | 8 | 9);
                }
                let signer = if by_buyer { mt.buyer } else { mt.seller };
                let got = match kind {
                    10 => t.verdict(&id, enc, None),
                    11 => t.verdict(&id, enc, Some("bad")),
                    _ => {
                        let action = match kind {
                            0 => TxAction::EstablishBuyer {
                                work_hash: work,
                                secret_hash: tx::secret_hash(&work, &secret),
                            },
                            1 => TxAction::EstablishSeller { worker_url: "http://w/".into() },
                            2 => TxAction::Secret { secret },
                            3 => TxAction::Secret { secret: [6; 32] },
                            4 => TxAction::Result { enc_result_hash: enc, result_key: [1; 32] },
                            5 => TxAction::Accept,
                            6 => TxAction::RejectResult,
                            7 => TxAction::RejectWork { reason: ReasonCode::Trap },
                            8 => TxAction::Receipt { enc_result_hash: enc },
                            _ => TxAction::Receipt { enc_result_hash: work },
                        };
                        t.act(signer, &id, action)
                    }
                };
                let want = m.act(i, signer, kind);
                match (&got, want) {
                    (Ok(v), Ok(())) => prop_assert_eq!(v.phase, m.txs[i].phase),
                    (Err(e), Err(code)) => prop_assert_eq!(e.code(), code),
                    (g, w) => prop_assert!(false, "act {}: core {:?} model {:?}", kind, g, w),
                }
            }
            Op::Replay => {
                if let Some((cmd, answer, valid_until)) = &last {
                    let got = t.apply(cmd);
                    m.advance(t.now);
                    if t.now / 1000 > *valid_until {
                        prop_assert_eq!(got.unwrap_err().code(), "expired");
                    } else {
                        let got = got.unwrap();
                        prop_assert!(!got.changed_state);
                        prop_assert_eq!(&got.answer, answer);
                    }
                }
            }
        }
        // Compare everything after every step.
        t.core.check_full();
        for who in 0..4 {
            let a = t.core.account(&KEYS[who].address());
            let (avail, blocked) =
                if m.seen[who] { (m.avail[who], m.blocked[who]) } else { (CAPITAL, 0) };
            prop_assert_eq!(
                (a.available_sat.0, a.blocked_sat.0),
                (avail, blocked),
                "account {}",
                who
            );
            prop_assert_eq!(a.record, m.records[who], "record of {}", who);
        }
        let l = t.core.ledger_view();
        prop_assert_eq!(l.fees_sat.0, m.fees);
        prop_assert_eq!(l.accounts, m.seen.iter().filter(|s| **s).count() as u64);
        prop_assert_eq!(l.available_sat.0 + l.blocked_sat.0 + l.fees_sat.0, l.created_sat.0);
        for (i, id) in bid_ids.iter().enumerate() {
            let b = t.core.bid(id).unwrap();
            prop_assert_eq!(
                (b.state, b.blocked_sat.0),
                (m.bids[i].state, m.bids[i].blocked),
                "bid {}",
                i
            );
        }
        for (i, id) in tx_ids.iter().enumerate() {
            let x = t.core.tx(id).unwrap();
            let mt = &m.txs[i];
            prop_assert_eq!(
                (x.phase, x.settlement, x.price_sat.0, x.fee_sat.0, x.dispute_deposit_sat.0),
                (mt.phase, mt.settled, mt.price, mt.fee, mt.deposit),
                "tx {}",
                i
            );
            if mt.settled.is_none() {
                prop_assert_eq!(x.deadline_ms, Some(mt.deadline));
            }
        }
    }
    // A restart (replay of the log) reaches exactly the same state.
    t.check_replay();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn core_agrees_with_the_model(ops in proptest::collection::vec(arb_op(), 1..80)) {
        run_sequence(ops)?;
    }
}

/// The wire form of the core's views, pinned (snapshot): a change here is a change of
/// the API that docs/PROTOCOL.md and every client must follow.
#[test]
fn view_json_snapshots() {
    let mut t = T::new();
    t.bid(1, Side::Sell, 1200).unwrap();
    t.bid(2, Side::Buy, 900).unwrap();
    t.now += 2500;
    let b = t.bid(3, Side::Buy, 1300).unwrap();
    assert_eq!(
        json(&b),
        format!(
            r#"{{"id":"b3","article":"{a}","side":"buy","price_sat":1300,"blocked_sat":1236,"owner":"{o}","state":"matched","created_ms":1002500,"expires_ms":1122500,"tx":"t3","version":6}}"#,
            a = t.article,
            o = KEYS[3].address()
        )
    );
    let book = t.core.book(&t.article).unwrap();
    assert_eq!(
        json(&book),
        format!(
            r#"{{"article":"{a}","buys":[{{"price_sat":900,"count":1}}],"sells":[],"last_price_sat":1200,"median_time_to_match_ms":2500,"resting":[{{"id":"b2","side":"buy","price_sat":900,"reason":"no seller at or below 900 sat; no sell bids"}}]}}"#,
            a = t.article
        )
    );
    let tx = t.core.tx(&Id::new("t3").unwrap()).unwrap();
    assert_eq!(
        json(&tx),
        format!(
            r#"{{"id":"t3","article":"{a}","buyer":"{b}","seller":"{s}","buy_bid":"b3","sell_bid":"b1","price_sat":1200,"fee_sat":36,"phase":"establishing","deadline_ms":1062500,"matched_ms":1002500,"work_hash":null,"secret_hash":null,"worker_url":null,"enc_result_hash":null,"reason":null,"dispute_deposit_sat":0,"settlement":null,"history":[{{"phase":"establishing","at_ms":1002500}}],"version":4}}"#,
            a = t.article,
            b = KEYS[3].address(),
            s = KEYS[1].address()
        )
    );
}

fn json<V: serde::Serialize>(v: &V) -> String {
    serde_json::to_string(v).unwrap()
}

/// Issue 13 item 7: at the highest starting capital the money created reaches u64::MAX
/// after 8,784 accounts; the next accounts open unfunded instead of overflowing (which
/// panicked and, being replayed, stopped the exchange again after every restart).
#[test]
fn created_money_never_overflows_at_the_highest_starting_capital() {
    let mut l = Ledger::new(Sat(PRICE_SAT_MAX));
    let funded_max = crate::limits::CREATED_SAT_MAX / PRICE_SAT_MAX;
    let addr = |i: u64| Address::from_pubkey_bytes(&i.to_le_bytes());
    for i in 0..funded_max + 10 {
        let expect = if i < funded_max { PRICE_SAT_MAX } else { 0 };
        assert_eq!(l.balance(&addr(i), true).0, Sat(expect), "account {i} before it opens");
        l.open_account(&addr(i), true);
        assert_eq!(l.balance(&addr(i), true).0, Sat(expect), "account {i}");
        l.assert_conserved();
    }
    assert_eq!(l.created(), Sat(funded_max * PRICE_SAT_MAX));
    l.assert_sums();
    // An account the shell did not fund gets nothing, capital or not.
    let mut l = Ledger::new(Sat(CAPITAL));
    l.open_account(&addr(0), false);
    assert_eq!((l.balance(&addr(0), false).0, l.created()), (Sat(0), Sat(0)));
}

/// Issue 13 item 11: open bids per account are capped; a match, a cancel or an expiry
/// frees a place.
#[test]
fn open_bids_per_account_are_capped() {
    let mut t = T::new();
    for _ in 0..crate::limits::OPEN_BIDS_PER_ACCOUNT_MAX {
        t.bid(1, Side::Sell, 100).unwrap();
    }
    assert_eq!(t.bid(1, Side::Sell, 100).unwrap_err().code(), "too_many_bids");
    // Another account is not affected, and its buy matches one of the sells.
    let b = t.bid(2, Side::Buy, 100).unwrap();
    assert_eq!(b.state, BidState::Matched);
    t.bid(1, Side::Sell, 100).unwrap();
    assert_eq!(t.bid(1, Side::Sell, 100).unwrap_err().code(), "too_many_bids");
    // A log written before the cap (or under a higher one) still replays: every logged
    // command was accepted once.
    let mut old = t.log.clone();
    let mut over = T::new();
    (over.n, over.nonce) = (1_000_000, 1_000_000); // ids and nonces unlike t's
    for _ in 0..=crate::limits::OPEN_BIDS_PER_ACCOUNT_MAX {
        old.push((over.bid_cmd(3, Side::Sell, 100), over.now));
    }
    let mut again = Core::new(rules());
    again.set_replaying(true);
    for (cmd, now) in &old {
        again.apply(cmd, *now).expect("a logged command applies again");
    }
    again.set_replaying(false);
    again.check_full();
    assert_eq!(
        again.ledger_view().open_bids as usize,
        2 * crate::limits::OPEN_BIDS_PER_ACCOUNT_MAX + 1
    );
}

/// Issue 13 item 6: each publisher has a bounded count and bytes; the canonical
/// manifest is capped at 64 KiB, whatever field makes it large.
#[test]
fn registry_quotas_per_publisher_and_manifest_cap() {
    let mut t = T::new();
    let publish = |t: &mut T, who: usize, m: &Manifest, size: u64| {
        let module_sha256 = m.module_sha256.unwrap_or(Hash32::of(b""));
        let op = Operation::Publish { article: m.id(), module_sha256, size };
        let signed = t.signed(who, op);
        t.apply(&Command::Publish { signed, manifest: m.clone() })
    };
    // Bytes: wasm articles that claim the largest module fill publisher 1's quota.
    let wasm = |i: u64| {
        let mut m = manifest();
        m.runtime = "wasm".parse().unwrap();
        m.module_sha256 = Some(Hash32::of(&i.to_le_bytes()));
        m
    };
    let size = MODULE_BYTES_MAX as u64;
    let fit = crate::limits::PUBLISHER_BYTES_MAX / (size + 1024);
    for i in 0..fit {
        publish(&mut t, 1, &wasm(i), size).unwrap();
    }
    let e = publish(&mut t, 1, &wasm(fit), size).unwrap_err();
    assert_eq!(e.code(), "quota_exceeded", "{e}");
    // Publishing an article again is still idempotent, and another publisher is free.
    assert!(!publish(&mut t, 1, &wasm(0), size).unwrap().changed_state);
    publish(&mut t, 2, &wasm(fit), size).unwrap();
    // Count: native articles (no module) up to ARTICLES_PER_PUBLISHER_MAX.
    let native = |i: usize| {
        let mut m = manifest();
        m.version = format!("2.0.{i}");
        m
    };
    for i in 0..crate::limits::ARTICLES_PER_PUBLISHER_MAX {
        publish(&mut t, 3, &native(i), 0).unwrap();
    }
    let e = publish(&mut t, 3, &native(usize::MAX), 0).unwrap_err();
    assert_eq!(e.code(), "quota_exceeded", "{e}");
    // A version string that takes the canonical manifest past 64 KiB is refused.
    let mut long = manifest();
    long.version = "1".repeat(MANIFEST_BYTES_MAX);
    assert_eq!(publish(&mut t, 2, &long, 0).unwrap_err().code(), "bad_manifest");
    t.check_replay();
    // Pages: in id order, `after` exclusive, at most `limit`.
    let all = t.core.articles();
    let mut paged = Vec::new();
    while let Some(p) = Some(t.core.articles_page(paged.last().map(|a: &ArticleEntry| &a.id), 7))
        && !p.is_empty()
    {
        assert!(p.len() <= 7);
        paged.extend(p);
    }
    assert_eq!(paged, all);
}

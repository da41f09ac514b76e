//! Mandates: the user's standing permissions to trade (BitWrk semantics). Sans-IO: every
//! function takes `now_ms`; persistence is a JSON value the caller writes.
//!
//! A mandate covers an activity (one bid) when the side is the same, the article is the
//! same (or the mandate is for any article), the price is within the mandate's limit
//! (a buy at most `price_sat`, a sell at least `price_sat`), the mandate has not expired
//! (`expires_ms`) and has trades left (`trades_left`, when limited). Each covered activity
//! uses up one trade. A mandate with neither limit lasts until it is revoked.

use std::fmt;
use std::str::FromStr;

use bitwrk_protocol::{Hash32, Sat, Side};
use serde::{Deserialize, Serialize};

/// At most this many mandates at once: each activity checks them all, and the list is shown
/// in full in the UI. Far above what a person manages by hand.
pub const MANDATES_MAX: usize = 256;
/// Longest mandate: about ten years, so `minutes × 60 000` stays far from overflow.
pub const MANDATE_MINUTES_MAX: u64 = 10 * 366 * 24 * 60;
/// Most trades one mandate may allow (a count beyond this is "unlimited" in practice).
pub const MANDATE_TRADES_MAX: u64 = 1_000_000_000;
/// Version of the persisted file format (`mandates.json`).
pub const MANDATES_FILE_VERSION: u32 = 1;

/// What the user asks for when creating a mandate: from the `--mandate` flag, the API, or
/// the permit dialog.
///
/// Flag syntax: `SIDE:ARTICLE:PRICE[:trades=N][:minutes=M]`
/// - `SIDE` is `buy` or `sell`;
/// - `ARTICLE` is an article id (64 lowercase hex) or `*` for any article (the
///   `--mandate` flag also takes a name, see [`MandateArg`]);
/// - `PRICE` in satoshi: the highest price for `buy`, the lowest for `sell`;
/// - `trades=N` (N ≥ 1): cover at most N trades; `minutes=M` (M ≥ 1): expire M minutes
///   after creation. Both may be given (whichever runs out first); with neither the
///   mandate lasts until revoked.
///
/// Examples: `buy:*:5000:trades=10`, `sell:3f1c…e9:100:minutes=60`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MandateSpec {
    pub side: Side,
    /// `None`: any article.
    #[serde(default)]
    pub article: Option<Hash32>,
    /// Buy: the highest price covered; sell: the lowest.
    pub price_sat: Sat,
    /// How many trades it covers; `None`: no count limit.
    #[serde(default)]
    pub trades: Option<u64>,
    /// How long it lasts from creation; `None`: no time limit.
    #[serde(default)]
    pub minutes: Option<u64>,
}

/// Why a mandate spec is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MandateError {
    #[error(
        "mandate syntax is SIDE:ARTICLE:PRICE[:trades=N][:minutes=M], e.g. buy:*:5000:trades=10; got {0:?}"
    )]
    Syntax(String),
    #[error("side must be buy or sell, not {0:?}")]
    Side(String),
    #[error("article must be a 64-hex-char article id or *, not {0:?}")]
    Article(String),
    #[error("price must be a whole number of satoshi, not {0:?}")]
    Price(String),
    #[error("{0}")]
    Limit(String),
    #[error("at most {MANDATES_MAX} mandates at once; revoke one first")]
    TooMany,
}

impl MandateSpec {
    /// Check the limits; the parser and the API both call this.
    pub fn validate(&self) -> Result<(), MandateError> {
        if let Some(n) = self.trades
            && !(1..=MANDATE_TRADES_MAX).contains(&n)
        {
            return Err(MandateError::Limit(format!(
                "trades must be 1 to {MANDATE_TRADES_MAX}, not {n}"
            )));
        }
        if let Some(m) = self.minutes
            && !(1..=MANDATE_MINUTES_MAX).contains(&m)
        {
            return Err(MandateError::Limit(format!(
                "minutes must be 1 to {MANDATE_MINUTES_MAX}, not {m}"
            )));
        }
        Ok(())
    }
}

impl FromStr for MandateSpec {
    type Err = MandateError;
    fn from_str(s: &str) -> Result<MandateSpec, MandateError> {
        let mut parts = s.trim().split(':');
        let (Some(side), Some(article), Some(price)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(MandateError::Syntax(s.to_string()));
        };
        let side: Side = side.parse().map_err(|_| MandateError::Side(side.to_string()))?;
        let article = match article {
            "*" => None,
            a => Some(a.parse::<Hash32>().map_err(|_| MandateError::Article(a.to_string()))?),
        };
        let price_sat =
            Sat(price.parse::<u64>().map_err(|_| MandateError::Price(price.to_string()))?);
        let mut spec = MandateSpec { side, article, price_sat, trades: None, minutes: None };
        for opt in parts {
            let (key, value) =
                opt.split_once('=').ok_or_else(|| MandateError::Syntax(s.to_string()))?;
            let n: u64 = value.parse().map_err(|_| {
                MandateError::Limit(format!("{key} needs a whole number, not {value:?}"))
            })?;
            let slot = match key {
                "trades" => &mut spec.trades,
                "minutes" => &mut spec.minutes,
                _ => return Err(MandateError::Syntax(s.to_string())),
            };
            if slot.replace(n).is_some() {
                return Err(MandateError::Limit(format!("{key} given twice")));
            }
        }
        spec.validate()?;
        Ok(spec)
    }
}

impl fmt::Display for MandateSpec {
    /// The flag syntax, so `Display` and `FromStr` round-trip.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.side)?;
        match &self.article {
            Some(a) => write!(f, "{a}")?,
            None => f.write_str("*")?,
        }
        write!(f, ":{}", self.price_sat.0)?;
        if let Some(n) = self.trades {
            write!(f, ":trades={n}")?;
        }
        if let Some(m) = self.minutes {
            write!(f, ":minutes={m}")?;
        }
        Ok(())
    }
}

/// `--mandate` as given on the command line: like [`MandateSpec`]'s syntax, but `ARTICLE`
/// may also be an article name (as with `--sell` and `buy`), which the host resolves on
/// the exchange at start (the newest version of that name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MandateArg {
    /// The spec; for a named article its `article` is filled in by the caller.
    pub spec: MandateSpec,
    /// The article name to resolve, when the flag gave a name instead of an id or `*`.
    pub article_name: Option<String>,
}

impl FromStr for MandateArg {
    type Err = MandateError;
    fn from_str(s: &str) -> Result<MandateArg, MandateError> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        let Some(&article) = parts.get(1) else {
            return Err(MandateError::Syntax(s.to_string()));
        };
        if article == "*" || article.parse::<Hash32>().is_ok() {
            return Ok(MandateArg { spec: s.parse()?, article_name: None });
        }
        if article.is_empty() {
            return Err(MandateError::Article(article.to_string()));
        }
        let mut any = parts.clone();
        any[1] = "*";
        let spec: MandateSpec = any.join(":").parse()?;
        Ok(MandateArg { spec, article_name: Some(article.to_string()) })
    }
}

impl fmt::Display for MandateArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.article_name {
            None => self.spec.fmt(f),
            Some(name) => {
                let text = self.spec.to_string();
                let (side, rest) = text.split_once(":*").expect("a spec for any article");
                write!(f, "{side}:{name}{rest}")
            }
        }
    }
}

/// A mandate in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mandate {
    pub id: u64,
    pub side: Side,
    /// `None`: any article.
    pub article: Option<Hash32>,
    /// Buy: the highest price covered; sell: the lowest.
    pub price_sat: Sat,
    /// Trades it may still cover; `None`: no count limit.
    pub trades_left: Option<u64>,
    /// When it ends (unix ms); `None`: no time limit.
    pub expires_ms: Option<u64>,
    pub created_ms: u64,
    /// Trades it has covered so far.
    pub used: u64,
    /// Where it came from; only `user` mandates are persisted.
    pub origin: Origin,
}

/// Where a mandate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Made in the UI or through the API: persisted in `mandates.json`, survives restarts.
    User,
    /// From a `--mandate` flag: lives as long as the process, because the same flag is
    /// given again at the next start (persisting it would pile up copies).
    Flag,
}

/// What a mandate is asked to cover: one bid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    pub article: Hash32,
    pub side: Side,
    pub price_sat: Sat,
}

impl Mandate {
    /// Still in force at `now_ms` (not expired, trades left).
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.expires_ms.is_none_or(|e| now_ms < e) && self.trades_left.is_none_or(|n| n > 0)
    }

    /// Covers `c` at `now_ms` (without using it up).
    pub fn covers(&self, c: &Coverage, now_ms: u64) -> bool {
        let price_ok = match self.side {
            Side::Buy => c.price_sat <= self.price_sat,
            Side::Sell => c.price_sat >= self.price_sat,
        };
        self.is_live(now_ms)
            && self.side == c.side
            && self.article.is_none_or(|a| a == c.article)
            && price_ok
    }
}

/// All mandates, and the next id to hand out. This is also the persisted file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MandateBook {
    pub version: u32,
    pub next_id: u64,
    pub mandates: Vec<Mandate>,
}

impl Default for MandateBook {
    fn default() -> Self {
        MandateBook { version: MANDATES_FILE_VERSION, next_id: 1, mandates: Vec::new() }
    }
}

impl MandateBook {
    /// Add a mandate created at `now_ms`. Expired and used-up mandates are dropped first.
    pub fn add(
        &mut self,
        spec: &MandateSpec,
        origin: Origin,
        now_ms: u64,
    ) -> Result<Mandate, MandateError> {
        spec.validate()?;
        self.prune(now_ms);
        if self.mandates.len() >= MANDATES_MAX {
            return Err(MandateError::TooMany);
        }
        let m = Mandate {
            id: self.next_id,
            side: spec.side,
            article: spec.article,
            price_sat: spec.price_sat,
            trades_left: spec.trades,
            // validate() bounds minutes, so this cannot overflow for any sane clock.
            expires_ms: spec.minutes.map(|m| now_ms.saturating_add(m * 60_000)),
            created_ms: now_ms,
            used: 0,
            origin,
        };
        self.next_id += 1;
        self.mandates.push(m.clone());
        Ok(m)
    }

    /// Remove a mandate; false if there is none with this id.
    pub fn revoke(&mut self, id: u64) -> bool {
        let before = self.mandates.len();
        self.mandates.retain(|m| m.id != id);
        self.mandates.len() != before
    }

    /// Drop expired and used-up mandates; true if any went.
    pub fn prune(&mut self, now_ms: u64) -> bool {
        let before = self.mandates.len();
        self.mandates.retain(|m| m.is_live(now_ms));
        self.mandates.len() != before
    }

    /// The mandate that would cover `c`: among those that do, the one that runs out first
    /// (fewest trades left, then earliest expiry, then oldest), so a broad unlimited mandate
    /// does not hide a narrow one the user made for this.
    pub fn find(&self, c: &Coverage, now_ms: u64) -> Option<&Mandate> {
        self.mandates.iter().filter(|m| m.covers(c, now_ms)).min_by_key(|m| {
            (m.trades_left.unwrap_or(u64::MAX), m.expires_ms.unwrap_or(u64::MAX), m.id)
        })
    }

    /// Use one trade of the covering mandate, if any: returns its id. A mandate whose
    /// last trade this was is removed.
    pub fn try_use(&mut self, c: &Coverage, now_ms: u64) -> Option<u64> {
        let id = self.find(c, now_ms)?.id;
        let m = self.mandates.iter_mut().find(|m| m.id == id).expect("found above");
        m.used += 1;
        if let Some(n) = m.trades_left.as_mut() {
            // covers() checked n > 0.
            *n -= 1;
        }
        self.prune(now_ms);
        Some(id)
    }

    /// Whether the use of mandate `id` just made (by [`MandateBook::try_use`]) changed
    /// what a restart must know: a persisted mandate's remaining trades, or its removal
    /// when used up. The use count alone does not.
    pub fn use_must_persist(&self, id: u64) -> bool {
        match self.mandates.iter().find(|m| m.id == id) {
            None => true,
            Some(m) => m.origin == Origin::User && m.trades_left.is_some(),
        }
    }

    /// Mandates in force at `now_ms`, oldest first.
    pub fn live(&self, now_ms: u64) -> impl Iterator<Item = &Mandate> {
        self.mandates.iter().filter(move |m| m.is_live(now_ms))
    }

    /// Parse the persisted file; refuses other versions and duplicate ids.
    pub fn from_json(text: &str) -> Result<MandateBook, String> {
        let book: MandateBook = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if book.version != MANDATES_FILE_VERSION {
            return Err(format!(
                "unknown mandates file version {} (expected {MANDATES_FILE_VERSION})",
                book.version
            ));
        }
        let mut ids: Vec<u64> = book.mandates.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != book.mandates.len() {
            return Err("duplicate mandate ids".to_string());
        }
        if ids.last().is_some_and(|&max| max >= book.next_id) {
            return Err("next_id is not above every mandate id".to_string());
        }
        Ok(book)
    }

    /// The persisted form: the `user` mandates only (see [`Origin`]).
    pub fn to_json(&self) -> String {
        let kept = MandateBook {
            version: self.version,
            next_id: self.next_id,
            mandates: self.mandates.iter().filter(|m| m.origin == Origin::User).cloned().collect(),
        };
        serde_json::to_string_pretty(&kept).expect("mandates serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: Hash32 = Hash32([0xaa; 32]);
    const B: Hash32 = Hash32([0xbb; 32]);
    const MIN: u64 = 60_000;

    fn spec(s: &str) -> MandateSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }
    fn cov(article: Hash32, side: Side, price: u64) -> Coverage {
        Coverage { article, side, price_sat: Sat(price) }
    }

    /// One line per case: the flag text and the expected result (Ok spec or error text part).
    fn check_parse(text: &str, expected: Result<MandateSpec, &str>) {
        match (text.parse::<MandateSpec>(), expected) {
            (Ok(got), Ok(want)) => {
                assert_eq!(got, want, "{text}");
                assert_eq!(
                    got.to_string().parse::<MandateSpec>().unwrap(),
                    got,
                    "round trip of {text}"
                );
            }
            (Err(e), Err(part)) => {
                assert!(e.to_string().contains(part), "{text}: {e} lacks {part:?}")
            }
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parse_cases() {
        let a = A.to_hex();
        let s = |side, article, p, trades, minutes| MandateSpec {
            side,
            article,
            price_sat: Sat(p),
            trades,
            minutes,
        };
        check_parse("buy:*:5000", Ok(s(Side::Buy, None, 5000, None, None)));
        check_parse("buy:*:5000:trades=10", Ok(s(Side::Buy, None, 5000, Some(10), None)));
        check_parse(
            &format!("sell:{a}:7:minutes=60"),
            Ok(s(Side::Sell, Some(A), 7, None, Some(60))),
        );
        check_parse("buy:*:1:minutes=5:trades=2", Ok(s(Side::Buy, None, 1, Some(2), Some(5))));
        check_parse(" buy:*:0 ", Ok(s(Side::Buy, None, 0, None, None)));
        check_parse("buy:*", Err("mandate syntax"));
        check_parse("", Err("mandate syntax"));
        check_parse("hold:*:5", Err("side must be"));
        check_parse("buy:abc:5", Err("article must be"));
        check_parse(&format!("buy:{}:5", a.to_uppercase()), Err("article must be"));
        check_parse("buy:*:-5", Err("price must be"));
        check_parse("buy:*:5.5", Err("price must be"));
        check_parse("buy:*:5:trades=0", Err("trades must be 1"));
        check_parse("buy:*:5:minutes=0", Err("minutes must be 1"));
        check_parse("buy:*:5:minutes=99999999999", Err("minutes must be 1"));
        check_parse("buy:*:5:trades=x", Err("whole number"));
        check_parse("buy:*:5:trades=1:trades=2", Err("given twice"));
        check_parse("buy:*:5:count=1", Err("mandate syntax"));
        check_parse("buy:*:5:trades", Err("mandate syntax"));
    }

    /// Matching, one line per case: mandate flag, activity, now (ms after creation), covered?
    #[test]
    fn covers_cases() {
        let check = |m: &str, c: Coverage, after_ms: u64, want: bool| {
            let mut book = MandateBook::default();
            let mandate = book.add(&spec(m), Origin::User, 1_000).unwrap();
            assert_eq!(mandate.covers(&c, 1_000 + after_ms), want, "{m} {c:?} +{after_ms}ms");
        };
        let a = A.to_hex();
        check("buy:*:100", cov(A, Side::Buy, 100), 0, true);
        check("buy:*:100", cov(A, Side::Buy, 101), 0, false);
        check("buy:*:100", cov(B, Side::Buy, 0), 0, true);
        check("buy:*:100", cov(A, Side::Sell, 100), 0, false);
        check("sell:*:100", cov(A, Side::Sell, 100), 0, true);
        check("sell:*:100", cov(A, Side::Sell, 99), 0, false);
        check("sell:*:100", cov(A, Side::Sell, 1_000), 0, true);
        check(&format!("buy:{a}:100"), cov(A, Side::Buy, 50), 0, true);
        check(&format!("buy:{a}:100"), cov(B, Side::Buy, 50), 0, false);
        check("buy:*:100:minutes=1", cov(A, Side::Buy, 50), MIN - 1, true);
        check("buy:*:100:minutes=1", cov(A, Side::Buy, 50), MIN, false);
        check("buy:*:100", cov(A, Side::Buy, 50), 100 * 365 * 24 * 60 * MIN, true);
    }

    #[test]
    fn mandate_flag_takes_names_ids_and_any() {
        let named: MandateArg = "sell:wordcount:100:trades=10".parse().expect("a name");
        assert_eq!(named.article_name.as_deref(), Some("wordcount"));
        assert_eq!(named.spec.price_sat, Sat(100));
        assert_eq!(named.spec.trades, Some(10));
        assert_eq!(named.to_string(), "sell:wordcount:100:trades=10");
        let any: MandateArg = "buy:*:5000".parse().expect("any");
        assert_eq!(any.article_name, None);
        assert_eq!(any.spec.article, None);
        let id = "ab".repeat(32);
        let by_id: MandateArg = format!("buy:{id}:5").parse().expect("an id");
        assert_eq!(by_id.article_name, None);
        assert_eq!(by_id.spec.article.map(|a| a.to_hex()), Some(id));
        assert!("buy::5".parse::<MandateArg>().is_err());
        assert!("sell:wordcount:abc".parse::<MandateArg>().is_err());
        assert!("sell:wordcount".parse::<MandateArg>().is_err());
    }

    #[test]
    fn counting_uses_up_and_removes() {
        let mut book = MandateBook::default();
        let m = book.add(&spec("buy:*:100:trades=2"), Origin::User, 0).unwrap();
        let c = cov(A, Side::Buy, 10);
        assert_eq!(book.try_use(&c, 1), Some(m.id));
        assert!(book.use_must_persist(m.id), "a counted mandate's remaining trades persist");
        assert_eq!(book.mandates[0].trades_left, Some(1));
        assert_eq!(book.mandates[0].used, 1);
        assert_eq!(book.try_use(&c, 2), Some(m.id));
        assert!(book.mandates.is_empty(), "used-up mandate is removed");
        assert!(book.use_must_persist(m.id), "so is its removal");
        let open = book.add(&spec("buy:*:100"), Origin::User, 0).unwrap();
        assert_eq!(book.try_use(&c, 3), Some(open.id));
        assert!(!book.use_must_persist(open.id), "an unlimited mandate's count waits");
        let flag = book.add(&spec("buy:*:200:trades=5"), Origin::Flag, 0).unwrap();
        assert_eq!(book.try_use(&c, 4), Some(flag.id));
        assert!(!book.use_must_persist(flag.id), "--mandate mandates are never saved");
    }

    #[test]
    fn narrowest_mandate_is_used_first() {
        let mut book = MandateBook::default();
        let broad = book.add(&spec("buy:*:100"), Origin::User, 0).unwrap();
        let timed = book.add(&spec("buy:*:100:minutes=5"), Origin::User, 0).unwrap();
        let counted = book.add(&spec("buy:*:100:trades=1"), Origin::User, 0).unwrap();
        let c = cov(A, Side::Buy, 10);
        assert_eq!(book.try_use(&c, 1), Some(counted.id));
        assert_eq!(book.try_use(&c, 1), Some(timed.id));
        assert_eq!(book.try_use(&c, 5 * MIN), Some(broad.id), "the timed one has expired");
        assert_eq!(book.try_use(&c, 5 * MIN), Some(broad.id));
        assert_eq!(book.mandates.len(), 1);
        assert_eq!(book.mandates[0].used, 2);
    }

    #[test]
    fn revoke_and_limit() {
        let mut book = MandateBook::default();
        for _ in 0..MANDATES_MAX {
            book.add(&spec("buy:*:1"), Origin::User, 0).unwrap();
        }
        assert_eq!(book.add(&spec("buy:*:1"), Origin::User, 0), Err(MandateError::TooMany));
        assert!(book.revoke(1));
        assert!(!book.revoke(1));
        let m = book.add(&spec("buy:*:1"), Origin::User, 0).unwrap();
        assert_eq!(m.id, MANDATES_MAX as u64 + 1, "ids are never reused");
    }

    #[test]
    fn persisted_form_round_trips_and_is_checked() {
        let mut book = MandateBook::default();
        book.add(&spec("buy:*:100:trades=3:minutes=10"), Origin::User, 5).unwrap();
        book.add(&spec(&format!("sell:{}:7", A.to_hex())), Origin::User, 6).unwrap();
        let text = book.to_json();
        // flag mandates are not persisted, but their ids stay used
        let mut with_flag = book.clone();
        with_flag.add(&spec("buy:*:1"), Origin::Flag, 7).unwrap();
        let reloaded = MandateBook::from_json(&with_flag.to_json()).unwrap();
        assert_eq!(reloaded.mandates, book.mandates);
        assert_eq!(reloaded.next_id, 4);
        assert_eq!(MandateBook::from_json(&text).unwrap(), book);
        assert!(MandateBook::from_json("{").is_err());
        let bad = text.replace("\"next_id\": 3", "\"next_id\": 2");
        assert!(MandateBook::from_json(&bad).unwrap_err().contains("next_id"));
        let bad = text.replace("\"version\": 1", "\"version\": 9");
        assert!(MandateBook::from_json(&bad).unwrap_err().contains("version"));
    }

    fn side_strategy() -> impl Strategy<Value = Side> {
        prop_oneof![Just(Side::Buy), Just(Side::Sell)]
    }

    proptest! {
        /// A counted mandate covers exactly its count of trades, whatever the order of
        /// requests; requests it does not cover never use it up.
        #[test]
        fn counted_mandate_covers_exactly_n(
            n in 1u64..20,
            limit in 0u64..1000,
            reqs in proptest::collection::vec((side_strategy(), 0u64..2000, any::<bool>()), 0..100),
        ) {
            let mut book = MandateBook::default();
            let m = book.add(&MandateSpec { side: Side::Buy, article: Some(A), price_sat: Sat(limit), trades: Some(n), minutes: None }, Origin::User, 0).unwrap();
            let mut covered = 0u64;
            for (side, price, same_article) in reqs {
                let c = cov(if same_article { A } else { B }, side, price);
                let should = covered < n && side == Side::Buy && same_article && price <= limit;
                let got = book.try_use(&c, 1);
                prop_assert_eq!(got.is_some(), should);
                if got.is_some() { prop_assert_eq!(got, Some(m.id)); covered += 1; }
            }
            prop_assert!(covered <= n);
            let left = book.mandates.first().map(|m| m.trades_left.unwrap()).unwrap_or(0);
            prop_assert_eq!(left + covered, n);
        }

        /// Flag text round-trips through Display/FromStr.
        #[test]
        fn spec_round_trips(
            side in side_strategy(), any_article in any::<bool>(), price in any::<u64>(),
            trades in proptest::option::of(1..=MANDATE_TRADES_MAX), minutes in proptest::option::of(1..=MANDATE_MINUTES_MAX),
        ) {
            let s = MandateSpec { side, article: if any_article { None } else { Some(B) }, price_sat: Sat(price), trades, minutes };
            prop_assert_eq!(s.to_string().parse::<MandateSpec>().unwrap(), s);
        }

        /// A timed mandate covers before its end and never at or after it.
        #[test]
        fn timed_mandate_expires(minutes in 1u64..1000, created in 0u64..1_000_000_000, at in 0u64..2_000_000_000) {
            let mut book = MandateBook::default();
            book.add(&MandateSpec { side: Side::Sell, article: None, price_sat: Sat(0), trades: None, minutes: Some(minutes) }, Origin::Flag, created).unwrap();
            let now = created + at;
            prop_assert_eq!(book.try_use(&cov(A, Side::Sell, 5), now).is_some(), at < minutes * MIN);
        }
    }
}

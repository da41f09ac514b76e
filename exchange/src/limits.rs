//! Every limit of the exchange in one place, each with the reason for its number.

use std::time::Duration;

/// Largest JSON body of a signed request (an envelope is < 5 KiB: the signed text is at
/// most 4 KiB, see `bitwrk_protocol::message::MESSAGE_BYTES_MAX`), with room to spare.
pub const BODY_BYTES_MAX: usize = 16 * 1024;

/// Largest article module (a wasm component). Real articles are a few hundred KiB to a
/// few MiB; 32 MiB leaves room for a large one without letting a publisher fill the disk.
pub const MODULE_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Largest publish body: the module in base64 (4/3 of the bytes) plus the manifest
/// (`bitwrk_protocol::manifest::caps::MANIFEST_BYTES_MAX`) and the envelope.
pub const PUBLISH_BODY_BYTES_MAX: usize = MODULE_BYTES_MAX / 3 * 4 + 4 + 128 * 1024;

/// Longest a long poll may wait: well below common proxy idle timeouts (90-120 s).
pub const WAIT_MS_MAX: u64 = 60_000;

/// Whole-request timeout at the HTTP edge; above [`WAIT_MS_MAX`] so long polls end by
/// themselves first.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);

/// Most requests being served at once; beyond that new ones wait (backpressure instead of
/// unbounded memory). Long polls count, so this is well above the expected host count.
pub const CONCURRENT_REQUESTS_MAX: usize = 8192;

/// Most jobs queued for the writer thread: one per request being served, one timer tick
/// and the stop. Sending never finds the queue full (a full queue would answer 503).
pub const WRITER_QUEUE_MAX: usize = CONCURRENT_REQUESTS_MAX + 2;

/// Longest `--commit-window-us`: how long the writer may hold a commit group open.
pub const COMMIT_WINDOW_US_MAX: u64 = 100_000;

/// Default commit window: long enough to gather the requests of busy clients into one
/// fsync, short next to the fsync itself (≈ 0.4 ms on the benchmark machine).
pub const COMMIT_WINDOW_US_DEFAULT: u64 = 300;

/// Most requests committed in one SQLite transaction (one fsync). Large enough that a
/// burst commits in a few groups, small enough that one group commits in milliseconds.
pub const COMMIT_GROUP_MAX: usize = 2048;

/// Highest bid price: all bitcoin there will ever be (21 million BTC). Keeps
/// `price + fee` and every sum of balances far from u64 overflow.
pub const PRICE_SAT_MAX: u64 = 21_000_000 * 100_000_000;

/// Most money the exchange ever creates, all starting capital together: u64::MAX. Every
/// balance and running total is a part of it, so no sum of money can overflow u64; an
/// account that would pass it opens with nothing (at the highest starting capital,
/// [`PRICE_SAT_MAX`], that is after 8,784 funded accounts; at the default 1 BTC, after
/// 184 billion).
pub const CREATED_SAT_MAX: u64 = u64::MAX;

/// Default of `--funded-accounts-per-ip-per-hour`: how many accounts seen for the first
/// time get the starting capital per source IP and hour (PROTOCOL §3). Starting capital
/// is free money; without a bound, fresh keys that each hand theirs to one account give
/// it any multiple. A household or a small lab behind one address runs a few hosts, one
/// key each; 8 an hour covers that, and a key past the quota starts at 0 (it can still
/// sell and earn). 0 funds every new account (a private test market).
pub const FUNDED_ACCOUNTS_PER_IP_PER_HOUR_DEFAULT: u32 = 8;

/// The window of the funding quota above.
pub const FUNDING_WINDOW: Duration = Duration::from_secs(3600);

/// Most source IPs the funding quota remembers at once (an entry is ~40 bytes); when full,
/// entries whose window has passed are dropped, and if none has, new accounts from
/// further addresses open unfunded until one has (fail closed: no free money).
pub const FUNDING_IPS_MAX: usize = 65_536;

/// Most open (resting) bids one account may have. A host places one sell bid per worker
/// slot and article it sells and at most `BUY_ATTEMPTS_MAX` buy bids per running request;
/// 256 covers a large host, and bounds what one key keeps in memory (~1.5 KB per bid)
/// to under 0.5 MB. Past it a bid is refused with 409 `too_many_bids`.
pub const OPEN_BIDS_PER_ACCOUNT_MAX: usize = 256;

/// Highest fee: 100 % (a fee above the price makes no sense and would break the
/// guarantee that the fee is at most the price).
pub const FEE_BPS_MAX: u32 = 10_000;

/// Most resting bids the book view explains one by one (the depth table covers all).
pub const BOOK_RESTING_SHOWN_MAX: usize = 100;

/// How many recent matches the median time-to-match is taken over, per article.
pub const MATCH_TIMES_KEPT: usize = 256;

/// Default per-IP request rate (requests per second, with a burst of twice that).
/// Generous: a busy host sends a few requests per trade. 0 switches the limit off.
pub const RATE_LIMIT_PER_S_DEFAULT: u32 = 1000;

/// Most distinct IPs the rate limiter remembers; beyond that the idle ones are dropped.
pub const RATE_LIMIT_IPS_MAX: usize = 65_536;

/// Most address → public key entries the signature cache keeps (33 bytes each + address).
pub const KEY_CACHE_MAX: usize = 1_000_000;

/// Tables of multiples (`bitwrk_protocol::fast_verify::KeyTable`, about 28 KiB each) kept
/// per generation of the hot-key cache; at most twice this many exist (≈ 56 MiB).
/// Enough for the accounts of a busy exchange that sign often; the others are checked
/// with the plain cached key.
pub const KEY_TABLES_MAX: usize = 1024;

/// A cached key gets a table after this many plain verifications. Building one costs
/// about six table verifications (three plain ones), so a key used only now and then
/// never costs more than it saves.
pub const KEY_TABLE_AFTER_USES: u32 = 8;

/// Most articles the registry accepts (each publish stores a manifest and maybe a module).
pub const ARTICLES_MAX: usize = 100_000;

/// Most articles one publisher (signing key) may publish. One name with a release a day
/// for over two years, or a few hundred names; one key cannot fill the registry
/// (100,000 publishes from one key did, for good: issue 13). Past it 409 `quota_exceeded`.
pub const ARTICLES_PER_PUBLISHER_MAX: usize = 1000;

/// Most bytes (modules plus canonical manifests) one publisher may store: 32 modules at
/// the largest size, or a thousand of a typical 1 MiB. Past it 409 `quota_exceeded`.
pub const PUBLISHER_BYTES_MAX: u64 = 1 << 30;

/// Largest page of `GET /v1/articles` (and the default `limit`). An entry is about a
/// KiB, at most a 64 KiB manifest, so a page is at most ~6.5 MiB and copying it holds
/// the core (and so the writer) for well under a millisecond.
pub const ARTICLES_PAGE_MAX: usize = 100;

/// Longest a server-sent event stream stays open; the client reconnects with the last
/// version it saw (`after_version`). Bounds how long one connection is held.
pub const SSE_STREAM_MAX: Duration = Duration::from_secs(600);

/// Longest bid lifetime or phase deadline a flag may set (one year): keeps every
/// deadline sum far from u64 overflow in milliseconds.
pub const DURATION_S_MAX: u64 = 365 * 24 * 3600;

/// Largest evidence upload (`PUT /v1/tx/{id}/evidence`): the largest result container
/// plus the 16-byte AEAD tag. The exchange holds it in memory to decrypt it, so
/// [`EVIDENCE_UPLOADS_MAX`] bounds how many are in flight.
pub const EVIDENCE_BYTES_MAX: u64 = bitwrk_protocol::transfer::limits::RESULT_BYTES_MAX + 16;
/// Evidence uploads at once, exchange-wide: each may hold up to a GiB in memory, so a few
/// (uploads need the parties' transfer credential, so strangers cannot take the slots;
/// a busy exchange answers 409 `busy` and the party retries).
pub const EVIDENCE_UPLOADS_MAX: usize = 2;

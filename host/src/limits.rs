//! Every limit and timing of the trading core in one place, each with why it is what it is.

use std::time::Duration;

/// Default bound of the content store on disk. Chunks of repeated inputs are what makes
/// re-sending a large .blend cheap, so keep a few GiB; `--store-max-bytes` changes it.
pub const STORE_BYTES_DEFAULT: u64 = 4 << 30;
/// Eviction brings the store down to this share of its bound (per mille), so it does not
/// run on every write once full.
pub const STORE_LOW_WATER_PERMILLE: u64 = 900;
/// Objects touched this recently are never evicted: they belong to a trade in flight
/// (a seller just told a buyer it holds them). The bound may be exceeded meanwhile.
pub const STORE_PIN_GRACE: Duration = Duration::from_secs(15 * 60);
/// Largest generation of the content store's small-object pack (there are two; at most an
/// eighth of the store's bound each). Bounds the scan on start-up as well.
pub const STORE_PACK_GENERATION_BYTES_MAX: u64 = 64 << 20;
/// Memory the content store's write-behind may hold (objects taken but not yet on disk).
/// Small trades never wait for the disk; a large upload (a chunk batch is at most 16 MiB)
/// falls back to writing before it is acknowledged once this much is queued.
pub const STORE_PENDING_BYTES_MAX: u64 = 64 << 20;

/// Bids a buyer places for one request before it gives up: the first plus two retries
/// after a seller that was unreachable, died, stalled or sent garbage. Each retry leaves
/// out every seller that failed this request before (the bid's `exclude`, at most
/// `bitwrk_protocol::message::BID_EXCLUDE_MAX`). What a request may spend in all: one
/// trade's price + fee; while attempts run, at most `BUY_ATTEMPTS_MAX × (price + fee +
/// dispute deposit)` is blocked, and a failed seller's share comes back at its verdict or
/// deadline (docs/PROTOCOL.md §4).
pub const BUY_ATTEMPTS_MAX: u32 = 3;
/// Wait before uploading evidence again when the exchange answers `busy` (it checks a
/// few disputes' evidence at a time).
pub const EVIDENCE_RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// Price of a buy when the request names none and the book has no sell to follow
/// (documented in README.md and in `buy --help`: change them with it).
pub const BUY_PRICE_FALLBACK_SAT: u64 = 1_000;
/// Largest request body the buying proxy takes (all inputs together): the manifest cap
/// of one input is 1 GiB, but the proxy holds the work in memory; 1 GiB total.
pub const BUY_BODY_BYTES_MAX: usize = 1 << 30;
/// How long a buy waits for the user's permission when no mandate covers it, before it
/// answers `permission_required` (403) naming what to permit: a client such as curl gets
/// an answer within a minute instead of waiting in silence for the whole permission wait.
pub const BUY_PERMISSION_WAIT: Duration = Duration::from_secs(60);
/// Buy requests the proxy serves at once; more wait (each holds its inputs in memory).
pub const BUY_CONCURRENT_MAX: usize = 64;

/// One long poll on the exchange (bid or tx): short enough that a lost connection is
/// noticed, long enough that an idle host makes few requests.
pub const EXCHANGE_WAIT: Duration = Duration::from_secs(20);
/// Timeout of a plain (non-waiting) request to a seller: connect, offer, receipt.
pub const SELLER_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one chunk batch upload (16 MiB even at a slow 1 MB/s fits).
pub const CHUNK_UPLOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// One result long poll at the seller; the buyer repeats it until the tx deadline.
pub const RESULT_WAIT: Duration = Duration::from_secs(20);
/// Body limit of the seller's external port besides chunk batches (the offer).
pub const EXT_BODY_BYTES_MAX: usize = bitwrk_protocol::transfer::limits::OFFER_BYTES_MAX;
/// Concurrent requests on the seller's external port (buyers are strangers).
pub const EXT_CONCURRENT_MAX: usize = 256;
/// Transactions a seller keeps transfer state for at once; each holds at most one work in
/// memory (bounded by the article's input caps) and the worker slots bound real use.
pub const SELLER_TRADES_MAX: usize = 1024;
/// How long a finished trade's encrypted result stays at the seller for a buyer that
/// retries its download or receipt.
pub const SELLER_RESULT_KEEP: Duration = Duration::from_secs(15 * 60);
/// Sell bids are re-placed when they expire; after an error placing one the bidder waits
/// this long before trying again, so a down exchange is not hammered.
pub const SELL_RETRY_BACKOFF: Duration = Duration::from_secs(2);
/// Modules and loaded articles a seller keeps in memory.
pub const ARTICLE_CACHE_MAX: usize = 64;
/// Buyers whose uploaded chunks a seller remembers for dedupe (`dedupe::BuyerChunks`).
/// A forgotten buyer just sends its chunks again.
pub const DEDUPE_BUYERS_MAX: usize = 1024;
/// Chunks remembered per buyer: 65 536 at the 64 KiB average chunk is 4 GiB of input, the
/// default store's size, so a buyer's own re-send of anything the store still holds dedupes.
pub const DEDUPE_CHUNKS_PER_BUYER_MAX: usize = 65_536;
/// Chunk entries remembered over all buyers: ~1 M hashes, about 64 MiB of index at most.
pub const DEDUPE_ENTRIES_MAX: usize = 1 << 20;

//! The OpenAPI 3 description served at `GET /openapi.json`, written by hand next to the
//! routes (a test checks every route of the router appears here).

use serde_json::{Value, json};

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn ok(schema: Value, what: &str) -> Value {
    json!({"description": what, "content": {"application/json": {"schema": schema}}})
}

fn err(what: &str) -> Value {
    json!({"description": what, "content": {"application/json": {"schema": r("ErrorBody")}}})
}

fn path_param(name: &str, what: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": what, "schema": {"type": "string"}})
}

fn wait_params(id_what: &str) -> Value {
    json!([
        path_param("id", id_what),
        {"name": "after_version", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0},
         "description": "Long poll: answer once the version is above this (or when wait_ms has passed)."},
        {"name": "wait_ms", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0},
         "description": "Longest wait in ms (default 30000, capped at limits.wait_ms_max = 60000)."}
    ])
}

fn signed_post(summary: &str, answer: &str, params: Value, errors: &[(&str, &str)]) -> Value {
    let mut responses = serde_json::Map::new();
    responses.insert(
        "200".into(),
        ok(r(answer), "accepted (or the first answer to this same envelope)"),
    );
    responses.insert(
        "400".into(),
        err("malformed JSON or message, wrong exchange id, expired or too far ahead"),
    );
    responses
        .insert("401".into(), err("bad_signature: signature invalid, high-S, or not by `address`"));
    responses.insert("409".into(), err("nonce_reused: another message under a used nonce"));
    responses.insert("413".into(), err("too_large: body over the limit"));
    responses.insert("429".into(), err("rate_limited"));
    for (code, what) in errors {
        responses.insert((*code).into(), err(what));
    }
    json!({
        "summary": summary,
        "parameters": params,
        "requestBody": {"required": true, "content": {"application/json": {"schema": r("Envelope")}}},
        "responses": responses
    })
}

/// The document.
pub fn document() -> Value {
    let hash = json!({"type": "string", "pattern": "^[0-9a-f]{64}$"});
    let id = json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"});
    let sat = json!({"type": "integer", "minimum": 0, "description": "satoshi"});
    let address =
        json!({"type": "string", "description": "mainnet P2PKH address of a compressed key"});
    let phase = json!({"type": "string", "enum": ["establishing", "buyer_established", "seller_established",
        "transmitting", "working", "committed", "unverified", "finished", "work_disputed", "result_disputed"]});
    let nullable = |s: &Value| json!({"anyOf": [s, {"type": "null"}]});
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "bitwrk exchange",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Order books, ledger, transactions and article registry of bitwrk (protocol v1). \
                State-changing requests carry a signed envelope (docs/PROTOCOL.md). \
                Every error is JSON {\"error\": code, \"message\": text} with a 4xx status."
        },
        "paths": {
            "/v1/info": {"get": {"summary": "Exchange id, version, fee, limits, deadlines, clock",
                "responses": {"200": ok(r("Info"), "the exchange's parameters")}}},
            "/v1/bids": {"post": signed_post("Place a bid (op=bid)", "BidView", json!([]), &[
                ("402", "insufficient_funds: available < price + fee (a fresh account past its source's funding quota has 0)"),
                ("404", "unknown_article: the article is not published"),
                ("409", "too_many_bids: the account has OPEN_BIDS_PER_ACCOUNT_MAX open bids / nonce_reused")])},
            "/v1/bids/{id}": {"get": {"summary": "A bid; long poll with after_version",
                "parameters": wait_params("bid id"),
                "responses": {"200": ok(r("BidView"), "the bid"), "404": err("no such bid")}}},
            "/v1/bids/{id}/events": {"get": {"summary": "Server-sent events: the bid at every change (event `bid`, id = version) until it is final",
                "parameters": wait_params("bid id"),
                "responses": {"200": {"description": "text/event-stream; data is a BidView",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}}}, "404": err("no such bid")}}},
            "/v1/tx/{id}/events": {"get": {"summary": "Server-sent events: the transaction at every change (event `tx`) until it is settled for good",
                "parameters": wait_params("transaction id"),
                "responses": {"200": {"description": "text/event-stream; data is a TxView",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}}}, "404": err("no such transaction")}}},
            "/v1/bids/{id}/cancel": {"post": signed_post("Cancel an open bid (op=cancel)", "BidView",
                json!([path_param("id", "bid id")]), &[
                ("403", "not_owner"), ("404", "unknown_bid"), ("409", "bid_not_open / nonce_reused")])},
            "/v1/tx/{id}": {
                "get": {"summary": "A transaction; long poll with after_version",
                    "parameters": wait_params("transaction id"),
                    "responses": {"200": ok(r("TxView"), "the transaction"), "404": err("no such transaction")}},
                "post": signed_post("A transaction action (op=tx); the answer to the buyer's `receipt` also carries `result_key`",
                    "ReceiptAnswer", json!([path_param("id", "transaction id")]), &[
                    ("402", "insufficient_funds: no money for the dispute deposit (reject_result)"),
                    ("403", "not_party: the signer is not the buyer/seller the action needs"),
                    ("404", "unknown_tx"),
                    ("409", "wrong_phase / tx_closed / nonce_reused")])
            },
            "/v1/tx/{id}/key": {"post": signed_post("The buyer's signed read of the result key (op=key), after its receipt",
                "KeyView", json!([path_param("id", "transaction id")]), &[
                ("403", "not_party: only the buyer reads the key"),
                ("404", "unknown_tx"),
                ("409", "wrong_phase: no receipt signed yet")])},
            "/v1/tx/{id}/evidence": {"put": {"summary": "Evidence of a disputed result: the ciphertext whose SHA256 is the committed enc_result_hash, raw bytes, from either party. \
                The exchange decrypts it with the committed key, checks the outputs against the manifest, and settles.",
                "parameters": [path_param("id", "transaction id")],
                "requestBody": {"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                "responses": {"200": ok(r("TxView"), "the settled transaction (dispute_seller_fault or dispute_buyer_fault)"),
                    "400": err("wrong_evidence: the bytes do not hash to enc_result_hash"),
                    "404": err("unknown_tx"),
                    "409": err("wrong_phase (not in result_disputed) / tx_closed / busy (another upload runs; retry)"),
                    "413": err("too_large: over the largest result"),
                    "429": err("rate_limited")}}},
            "/v1/accounts/{address}": {"get": {"summary": "Available and blocked money of an account",
                "parameters": [path_param("address", "account address")],
                "responses": {"200": ok(r("AccountView"), "balances (unseen accounts show the starting capital)"),
                    "400": err("bad_address")}}},
            "/v1/ledger": {"get": {"summary": "Money totals (conservation check)",
                "responses": {"200": ok(r("LedgerView"), "totals")}}},
            "/v1/articles": {
                "get": {"summary": "A page of the published articles, in id order",
                    "parameters": [
                        {"name": "after", "in": "query", "required": false, "schema": {"type": "string"},
                         "description": "article id (64 hex): list the ids after it (exclusive)"},
                        {"name": "limit", "in": "query", "required": false,
                         "schema": {"type": "integer", "minimum": 1, "maximum": crate::limits::ARTICLES_PAGE_MAX, "default": crate::limits::ARTICLES_PAGE_MAX},
                         "description": "most entries; a shorter page is the last"}],
                    "responses": {"200": ok(json!({"type": "array", "items": r("ArticleEntry")}), "one page of the registry"),
                        "400": err("bad_query (limit out of range, unknown key) / bad_id (after)")}},
                "post": {"summary": "Publish an article (op=publish); idempotent",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": r("PublishRequest")}}},
                    "responses": {
                        "200": ok(r("ArticleEntry"), "published (or already published)"),
                        "400": err("bad_json / bad_message / wrong_exchange / expired / too_far_ahead"),
                        "401": err("bad_signature"),
                        "409": err("nonce_reused / quota_exceeded (the publisher's count or bytes) / registry_full"),
                        "413": err("too_large: module over limits.module_bytes_max"),
                        "422": err("bad_manifest / bad_module (hash or size mismatch) / module_refused (imports)")}}
            },
            "/v1/articles/{id}": {"get": {"summary": "One article", "parameters": [path_param("id", "article id (64 hex)")],
                "responses": {"200": ok(r("ArticleEntry"), "the article"), "404": err("not_found")}}},
            "/v1/articles/{id}/module": {"get": {"summary": "The article's module bytes (application/wasm)",
                "parameters": [path_param("id", "article id (64 hex)")],
                "responses": {"200": {"description": "module bytes; SHA256 = manifest.module_sha256",
                    "content": {"application/wasm": {"schema": {"type": "string", "format": "binary"}}}},
                    "404": err("not_found (or a native article)")}}},
            "/v1/articles/{id}/book": {"get": {"summary": "Order book: depth, last price, median time-to-match, why bids rest",
                "parameters": [path_param("id", "article id (64 hex)")],
                "responses": {"200": ok(r("BookView"), "the book"), "404": err("not_found")}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics",
                "responses": {"200": {"description": "text exposition format",
                    "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": ok(json!({"type": "object"}), "{\"status\":\"ok\"}")}}}
        },
        "components": {"schemas": {
            "ErrorBody": {"type": "object", "required": ["error", "message"],
                "properties": {"error": {"type": "string"}, "message": {"type": "string"}}},
            "Envelope": {"type": "object", "additionalProperties": false, "required": ["address", "signature", "message"],
                "properties": {"address": address, "signature": {"type": "string", "description": "base64 compact signature, low-S"},
                    "message": {"type": "string", "description": "the exact signed text v=1&exchange=..&op=..&..&nonce=..&valid_until=.."}}},
            "Deadlines": {"type": "object", "properties": {
                "establishing_s": {"type": "integer"}, "transmitting_s": {"type": "integer"}, "working_s": {"type": "integer"},
                "committed_s": {"type": "integer"}, "unverified_s": {"type": "integer"}, "result_disputed_s": {"type": "integer"}}},
            "Info": {"type": "object", "properties": {
                "exchange_id": {"type": "string"}, "version": {"type": "string"}, "protocol": {"type": "integer"},
                "fee_bps": {"type": "integer"}, "bid_lifetime_s": {"type": "integer"}, "starting_capital_sat": sat,
                "deadlines": r("Deadlines"),
                "limits": {"type": "object", "properties": {"body_bytes_max": {"type": "integer"},
                    "module_bytes_max": {"type": "integer"}, "valid_ahead_s_max": {"type": "integer"}, "wait_ms_max": {"type": "integer"}}},
                "now_ms": {"type": "integer"}}},
            "BidView": {"type": "object", "properties": {
                "id": id, "article": hash, "side": {"type": "string", "enum": ["buy", "sell"]}, "price_sat": sat,
                "blocked_sat": sat, "owner": address, "state": {"type": "string", "enum": ["open", "matched", "cancelled", "expired"]},
                "created_ms": {"type": "integer"}, "expires_ms": {"type": "integer"}, "tx": nullable(&id), "version": {"type": "integer"}}},
            "PhaseEntry": {"type": "object", "properties": {"phase": phase, "at_ms": {"type": "integer"}, "note": {"type": "string"}}},
            "TxView": {"type": "object", "properties": {
                "id": id, "article": hash, "buyer": address, "seller": address, "buy_bid": id, "sell_bid": id,
                "price_sat": sat, "fee_sat": sat, "phase": phase, "deadline_ms": nullable(&json!({"type": "integer"})),
                "matched_ms": {"type": "integer"}, "work_hash": nullable(&hash), "secret_hash": nullable(&hash),
                "worker_url": nullable(&json!({"type": "string"})), "enc_result_hash": nullable(&hash),
                "dispute_deposit_sat": sat,
                "reason": nullable(&json!({"type": "string", "enum": ["bad_input", "failed", "trap", "fuel_exhausted", "memory_exceeded",
                    "timeout", "output_too_large", "unsupported", "internal"]})),
                "settlement": nullable(&json!({"type": "string", "enum": ["paid_seller", "refunded_buyer", "lapsed",
                    "dispute_seller_fault", "dispute_buyer_fault"]})),
                "history": {"type": "array", "items": r("PhaseEntry")}, "version": {"type": "integer"}}},
            "ReceiptAnswer": {"description": "A TxView; the answer to the buyer's receipt adds result_key",
                "allOf": [r("TxView"), {"type": "object", "properties": {"result_key": hash}}]},
            "KeyView": {"type": "object", "properties": {"tx": id, "enc_result_hash": hash, "result_key": hash}},
            "AccountView": {"type": "object", "properties": {"address": address, "available_sat": sat, "blocked_sat": sat,
                "trades_bought": {"type": "integer"}, "trades_sold": {"type": "integer"},
                "disputes_won": {"type": "integer", "description": "as buyer"},
                "disputes_lost": {"type": "integer", "description": "as buyer (no evidence counts as lost)"},
                "seller_faults": {"type": "integer", "description": "as seller: disputes the evidence decided against it"},
                "lapsed": {"type": "integer", "description": "as buyer: committed results it never signed a receipt for"}}},
            "LedgerView": {"type": "object", "properties": {"accounts": {"type": "integer"}, "created_sat": sat,
                "available_sat": sat, "blocked_sat": sat, "fees_sat": sat, "open_bids": {"type": "integer"},
                "open_txs": {"type": "integer"}, "bids_total": {"type": "integer"}, "txs_total": {"type": "integer"}}},
            "IoDecl": {"type": "object", "additionalProperties": false, "required": ["name", "media_type", "max_bytes"],
                "properties": {"name": {"type": "string"}, "media_type": {"type": "string"}, "max_bytes": {"type": "integer"}}},
            "Manifest": {"type": "object", "additionalProperties": false,
                "required": ["name", "version", "runtime", "inputs", "outputs", "limits"],
                "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                    "runtime": {"type": "string", "description": "wasm or native:blender-<major.minor>"},
                    "module_sha256": hash, "description": {"type": "string"},
                    "inputs": {"type": "array", "items": r("IoDecl")}, "outputs": {"type": "array", "items": r("IoDecl")},
                    "limits": {"type": "object", "properties": {"fuel": {"type": "integer"}, "memory_bytes": {"type": "integer"},
                        "wall_ms": {"type": "integer"}, "strict_floats": {"type": "boolean"}}}}},
            "PublishRequest": {"type": "object", "additionalProperties": false, "required": ["envelope", "manifest", "module_base64"],
                "properties": {"envelope": r("Envelope"), "manifest": r("Manifest"),
                    "module_base64": {"type": "string", "description": "the module, base64; empty for native articles"}}},
            "ArticleEntry": {"type": "object", "properties": {"id": hash, "manifest": r("Manifest"),
                "module_size": {"type": "integer"}, "publisher": address, "published_ms": {"type": "integer"}}},
            "Level": {"type": "object", "properties": {"price_sat": sat, "count": {"type": "integer"}}},
            "RestingBid": {"type": "object", "properties": {"id": id, "side": {"type": "string"}, "price_sat": sat,
                "reason": {"type": "string"}}},
            "BookView": {"type": "object", "properties": {"article": hash,
                "buys": {"type": "array", "items": r("Level"), "description": "highest price first"},
                "sells": {"type": "array", "items": r("Level"), "description": "lowest price first"},
                "last_price_sat": nullable(&sat), "median_time_to_match_ms": nullable(&json!({"type": "integer"})),
                "resting": {"type": "array", "items": r("RestingBid")}}}
        }}
    })
}

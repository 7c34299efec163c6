//! Sends waiting for their ack, kept in `localStorage` so that a reload mid-send retries the
//! same `client_id` (the relay then stores the message once), and the ids themselves.
//!
//! Every change is a read-modify-write of the stored list, so two tabs of the same visitor add
//! and settle their own sends without erasing each other's.

use protocol::timeline::Outbox;
use protocol::ClientId;
use serde::Serialize;

use crate::storage::{Store, OUTBOX};

/// One stored send; the protocol's `Pending` is not serde, and the stored shape is ours anyway.
/// Read back through [`crate::wire::pairs`] (the browser's JSON parser, for size).
#[derive(Serialize)]
struct Stored {
    client_id: String,
    text: String,
}

/// Turns stored text back into an outbox. Broken or foreign entries are skipped, never fatal:
/// the storage belongs to the host page's origin and anything may be in it.
pub fn decode(text: &str) -> Outbox {
    let mut outbox = Outbox::new();
    for (client_id, text) in crate::wire::pairs(text) {
        let id = ClientId(client_id);
        if id.is_valid() && !text.is_empty() && !has(&outbox, &id) {
            outbox.push(id, text);
        }
    }
    outbox
}

/// The stored form of an outbox.
pub fn encode(outbox: &Outbox) -> String {
    let list: Vec<Stored> = outbox
        .pending()
        .iter()
        .map(|p| Stored {
            client_id: p.client_id.0.clone(),
            text: p.text.clone(),
        })
        .collect();
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
}

fn has(outbox: &Outbox, id: &ClientId) -> bool {
    outbox.pending().iter().any(|p| &p.client_id == id)
}

/// The stored outbox of this site (empty when none).
pub fn load(store: &Store) -> Outbox {
    store.get(OUTBOX).map(|t| decode(&t)).unwrap_or_default()
}

fn save(store: &Store, outbox: &Outbox) {
    if outbox.pending().is_empty() {
        store.remove(OUTBOX);
    } else {
        store.set(OUTBOX, &encode(outbox));
    }
}

/// Adds a send to the stored outbox.
pub fn persist_push(store: &Store, client_id: &ClientId, text: &str) {
    let mut outbox = load(store);
    if !has(&outbox, client_id) {
        outbox.push(client_id.clone(), text.to_owned());
    }
    save(store, &outbox);
}

/// Removes a send from the stored outbox (acked, or refused for good).
pub fn persist_settle(store: &Store, client_id: &ClientId) {
    let mut outbox = load(store);
    if outbox.settle(client_id).is_some() {
        save(store, &outbox);
    }
}

/// A fresh idempotency key: 20 characters of `[A-Za-z0-9]` (about 119 bits).
pub fn new_client_id() -> ClientId {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let id: String = (0..20)
        .map(|_| {
            let i = (js_sys::Math::random() * ALPHABET.len() as f64) as usize;
            char::from(ALPHABET[i.min(ALPHABET.len() - 1)])
        })
        .collect();
    ClientId(id)
}

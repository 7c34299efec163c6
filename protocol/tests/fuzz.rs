//! A bounded mutation fuzzer for every decoder that reads text from the other side: the relay's
//! (`VisitorFrame`, `AgentFrame`), the clients' (`ToVisitor`, `ToAgent`) and the console's
//! co-browse item decoder (`cobrowse::decode_item`). None may panic, and every refusal must be
//! one of the typed errors PROTOCOL.md lists.
//!
//! Seeds are the frames PROTOCOL.md shows (what an outsider writes a client from), mutated by
//! byte flips, insertions, deletions, splices between seeds, deep nesting and odd numbers and
//! characters. CI runs `PARLEY_FUZZ_ITERATIONS` (default 20,000) inputs per run from a seed that
//! changes every run (printed, so a failure can be replayed with `PARLEY_FUZZ_SEED`); set both
//! for a longer campaign.
//!
//! Hand-written rather than cargo-fuzz: libFuzzer needs a nightly toolchain, which this
//! project's machines do not have; the decoders are pure functions, so a plain loop over many
//! inputs finds what a coverage-guided run finds at these sizes, only slower.

#![cfg(not(target_arch = "wasm32"))]

use parley_protocol::cobrowse::decode_item;
use parley_protocol::{decode, AgentFrame, ErrorCode, ToAgent, ToVisitor, VisitorFrame};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The JSON examples of PROTOCOL.md, and the co-browse items carried inside them.
fn seeds() -> (Vec<String>, Vec<String>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../PROTOCOL.md");
    let text = std::fs::read_to_string(&path).expect("PROTOCOL.md next to the protocol crate");
    let frames: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("{\"type\""))
        .map(str::to_owned)
        .collect();
    let items: Vec<String> = frames
        .iter()
        .filter_map(|f| serde_json::from_str::<serde_json::Value>(f).ok())
        .filter_map(|v| v.get("data")?.as_str().map(str::to_owned))
        .collect();
    (frames, items)
}

/// One mutation of `input`, sometimes spliced with `other`.
fn mutate(rng: &mut StdRng, input: &str, other: &str) -> String {
    let mut bytes = input.as_bytes().to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        let at = if bytes.is_empty() {
            0
        } else {
            rng.gen_range(0..bytes.len())
        };
        match rng.gen_range(0..9) {
            0 if !bytes.is_empty() => bytes[at] ^= 1 << rng.gen_range(0..8),
            1 => bytes.insert(at, rng.gen()),
            2 if !bytes.is_empty() => {
                let end = (at + rng.gen_range(1..16)).min(bytes.len());
                bytes.drain(at..end);
            }
            3 if !bytes.is_empty() => {
                let end = (at + rng.gen_range(1..32)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            4 => {
                let from = other.as_bytes();
                if !from.is_empty() {
                    let start = rng.gen_range(0..from.len());
                    let end = (start + rng.gen_range(1..64)).min(from.len());
                    bytes.splice(at..at, from[start..end].iter().copied());
                }
            }
            5 => {
                let depth = rng.gen_range(1..3000);
                let open = if rng.gen() { "[" } else { "{\"a\":" };
                bytes.splice(at..at, open.repeat(depth).into_bytes());
            }
            6 => {
                let odd = [
                    "1e999999",
                    "-0",
                    "18446744073709551616",
                    "null",
                    "\"\\ud800\"",
                    "\u{feff}",
                    "\"\u{202e}\"",
                    "true",
                    "[]",
                    "{}",
                    "\"\\u0000\"",
                    "0.0000000000000000001",
                ];
                let pick = odd[rng.gen_range(0..odd.len())];
                bytes.splice(at..at, pick.bytes());
            }
            7 => bytes.truncate(at),
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The typed refusals a frame decoder may answer with.
fn typed(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Malformed | ErrorCode::UnknownType | ErrorCode::Invalid
    )
}

#[test]
fn no_decoder_panics_on_mutated_protocol_examples() {
    let (frames, items) = seeds();
    assert!(
        frames.len() > 30,
        "PROTOCOL.md examples found: {}",
        frames.len()
    );
    assert!(!items.is_empty(), "co-browse items found in the examples");
    // Positive control: the documented examples decode where they are complete.
    let decodable = frames
        .iter()
        .filter(|f| {
            decode::<VisitorFrame>(f).is_ok()
                || decode::<AgentFrame>(f).is_ok()
                || decode::<ToVisitor>(f).is_ok()
                || decode::<ToAgent>(f).is_ok()
        })
        .count();
    assert!(
        decodable > 10,
        "only {decodable} examples decode as they stand"
    );

    let iterations: usize = std::env::var("PARLEY_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seed: u64 = std::env::var("PARLEY_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("fuzz: {iterations} inputs, PARLEY_FUZZ_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut refused, mut accepted) = (0usize, 0usize);
    for _ in 0..iterations {
        let base = &frames[rng.gen_range(0..frames.len())];
        let other = &frames[rng.gen_range(0..frames.len())];
        let input = mutate(&mut rng, base, other);
        for result in [
            decode::<VisitorFrame>(&input).map(|_| ()),
            decode::<AgentFrame>(&input).map(|_| ()),
            decode::<ToVisitor>(&input).map(|_| ()),
            decode::<ToAgent>(&input).map(|_| ()),
        ] {
            match result {
                Ok(()) => accepted += 1,
                Err(e) => {
                    assert!(typed(e.code), "untyped refusal {e:?} for {input:?}");
                    refused += 1;
                }
            }
        }
        let item = &items[rng.gen_range(0..items.len())];
        let item_input = mutate(&mut rng, item, base);
        // Refusals are typed by construction (`cobrowse::DecodeError`); what matters is no
        // panic and no stack overflow, whatever the nesting.
        let _ = decode_item(&item_input);
    }
    println!("fuzz: {accepted} decodes accepted, {refused} refused with a typed error");
    assert!(
        refused > 0 && accepted > 0,
        "the mutations reached both paths"
    );
}

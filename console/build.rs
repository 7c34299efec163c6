//! A bigger wasm stack: co-browse pages nest up to `protocol::cobrowse::MAX_DEPTH` (512) nodes,
//! and serializing, parsing, building and dropping such a tree recurses once or twice per level.
//! Measured in a debug wasm build, parsing alone overflowed the default 1 MiB stack between 400
//! and 600 levels (about 2 KiB a level); with 4 MiB, 600 levels pass (the limit is 512) and what
//! stops deeper trees first is the browser's own call stack (see `MAX_DEPTH`).
//! Only the final link of this package's wasm targets changes (no dependency is rebuilt).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg=-zstack-size=4194304");
    }
}

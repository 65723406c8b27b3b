//! How deep a handshake corpus gets: `cargo run --example corpus_depth -- server DIR...` (or
//! `client`). Prints how many inputs stop after 0, 1, 2 or 3 accepted frames, to check that
//! the fuzzer really reaches the signature and Finished checks and does not only exercise
//! the decoders.

use std::collections::BTreeMap;

fn main() {
    let mut args = std::env::args().skip(1);
    let side = args
        .next()
        .expect("usage: corpus_depth server|client DIR...");
    let run = match side.as_str() {
        "server" => minitls_fuzz::run_server,
        "client" => minitls_fuzz::run_client,
        _ => panic!("side is server or client"),
    };
    let mut depths = BTreeMap::<usize, usize>::new();
    for dir in args {
        for entry in std::fs::read_dir(&dir).expect("readable corpus directory") {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            *depths.entry(run(&data)).or_default() += 1;
        }
    }
    for (depth, n) in depths {
        println!("{side}: {n} inputs accepted by {depth} state(s)");
    }
}

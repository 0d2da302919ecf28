//! Arbitrary bytes as an incoming message: decoding never panics, never allocates beyond
//! the bound, and what decodes re-encodes to something that decodes to the same message.
//! A node handed the bytes answers with an error or handles them, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipaxos::{wire, Config, MemoryStorage, OmniPaxos};

const MAX: usize = 1 << 20;

fn round_trip(data: &[u8]) {
    if let Ok((config_id, msg)) = wire::decode(data, MAX) {
        let mut again = Vec::new();
        wire::encode(config_id, &msg, &mut again);
        let (id2, msg2) = wire::decode(&again, usize::MAX).expect("re-encoded message decodes");
        assert_eq!((config_id, &msg), (id2, &msg2));
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip(data);
    // The same bytes behind a valid magic number and version, so that the fuzzer reaches
    // the body decoder without having to find the magic first.
    let mut framed = wire::MAGIC.to_vec();
    framed.push(wire::WIRE_VERSION);
    framed.extend_from_slice(data);
    round_trip(&framed);
    let config = Config {
        pid: 2,
        peers: vec![1, 3],
        max_message_bytes: MAX,
        ..Config::default()
    };
    let mut node = OmniPaxos::with_session(config, Box::new(MemoryStorage::new()), 7).unwrap();
    let _ = node.handle_incoming_bytes(data);
    let mut out = Vec::new();
    let _ = node.take_outgoing(&mut out);
});

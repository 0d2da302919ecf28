//! Arbitrary text as a HOCON configuration: a configuration or a clear error, never a
//! panic out of the library (nor a hang: libFuzzer's timeout catches one).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use omnipaxos::Config;

fuzz_target!(|data: &[u8]| {
    common::quiet_caught_panics();
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(config) = Config::with_hocon_str(text) {
            let _ = config.validate();
        }
    }
});

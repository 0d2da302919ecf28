/// libfuzzer-sys aborts on every panic, even one the library catches on purpose (the HOCON
/// parser runs under `catch_unwind`, see `src/config/hocon.rs`). A silent hook leaves the
/// caught ones alone; a panic that escapes the target still aborts the run (libfuzzer-sys
/// reports any unwinding out of the target as a crash).
pub fn quiet_caught_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

//! Panics the library catches stay off the host's stderr.
//!
//! Rust prints every panic through the process-wide panic hook before unwinding starts,
//! even one that `catch_unwind` then catches. A library must not write to its host's
//! stderr, so [`catch`] (every `catch_unwind` of the crate, the C boundary's guard
//! included) marks the calling thread as "inside the library" while its closure runs, and
//! a hook installed once (the first time [`catch`] runs) stays silent for panics on a
//! marked thread: it records the message and location for the thread instead, which the
//! caller turns into an error message ([`take_last_panic`]). Panics anywhere else go to
//! the hook that was installed before ours, unchanged.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};

use once_cell::sync::OnceCell;

thread_local! {
    /// How many [`catch`] calls are running on this thread.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// The last panic caught silently on this thread: "message (at file:line)".
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

static INSTALLED: OnceCell<()> = OnceCell::new();

fn install() {
    INSTALLED.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let quiet = DEPTH.try_with(|d| d.get() > 0).unwrap_or(false);
            if !quiet {
                previous(info);
                return;
            }
            let text = payload_text(info.payload());
            let at = info
                .location()
                .map(|l| format!(" (at {}:{})", l.file(), l.line()))
                .unwrap_or_default();
            let _ = LAST.try_with(|slot| {
                if let Ok(mut slot) = slot.try_borrow_mut() {
                    *slot = Some(format!("{text}{at}"));
                }
            });
        }));
    });
}

/// The text of a panic payload.
pub(crate) fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-text payload".to_string())
}

/// `catch_unwind`, with the panic kept off stderr (see the module documentation).
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    install();
    struct Depth;
    impl Drop for Depth {
        fn drop(&mut self) {
            let _ = DEPTH.try_with(|d| d.set(d.get().saturating_sub(1)));
        }
    }
    let _ = DEPTH.try_with(|d| d.set(d.get() + 1));
    let _depth = Depth;
    catch_unwind(AssertUnwindSafe(f))
}

/// The message and location of the last panic [`catch`] caught on this thread, once.
pub(crate) fn take_last_panic() -> Option<String> {
    LAST.try_with(|slot| slot.try_borrow_mut().ok().and_then(|mut s| s.take()))
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caught_panics_are_recorded_not_printed() {
        let r = catch(|| panic!("quiet please"));
        assert!(r.is_err());
        let last = take_last_panic().unwrap();
        assert!(
            last.contains("quiet please") && last.contains("quiet.rs"),
            "{last}"
        );
        assert_eq!(take_last_panic(), None);
        assert_eq!(catch(|| 5).unwrap(), 5);
    }
}

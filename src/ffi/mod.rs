//! The C API (placeholder).

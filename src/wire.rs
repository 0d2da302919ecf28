//! The wire format (placeholder).

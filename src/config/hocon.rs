//! HOCON loading (placeholder).

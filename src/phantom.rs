//! phantom (in progress).

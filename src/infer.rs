//! infer (in progress).

//! preprocess (in progress).

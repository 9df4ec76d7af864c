//! morph (skeleton; filled by its issue).

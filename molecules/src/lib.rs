//! molecules (skeleton; filled by its issue).

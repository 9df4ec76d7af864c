//! clipr (skeleton; filled by its issue).

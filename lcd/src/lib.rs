//! lcd (skeleton; filled by its issue).

//! Molecule batches for Morph: padded tensors, vocabularies (filled by issue 6).

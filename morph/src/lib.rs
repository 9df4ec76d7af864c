//! morph: flexible-size E(3)-equivariant molecule generation by flow matching
//! with atom insertion/deletion (filled by issue 6); verifier-based flow
//! expansion in [`expand`] (issue 7).
pub mod expand;

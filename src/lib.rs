//! cellmol: a thin facade over the workspace crates, for notebooks
//! (`:dep cellmol = { path = ".." }`) and downstream Rust code.
pub use clipr;
pub use datasets;
pub use lcd;
pub use molecules;
pub use morph;

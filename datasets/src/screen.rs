//! Perturbation screens over AnnData (filled by issue 2).

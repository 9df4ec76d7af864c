//! Screen simulators with a known causal truth (filled by issue 2).

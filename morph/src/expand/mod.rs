//! Verifier-based flow expansion: Flow Expander and ActFlow (filled by issue 7).

//! k* distribution (SPEC.md, Kotyan & Vargas).

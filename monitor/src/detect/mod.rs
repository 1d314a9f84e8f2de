//! Detection: synchronous functions of (state, event) -> alerts.

pub mod alert;

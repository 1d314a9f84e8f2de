//! agentwatch: a runtime monitor for AI coding agents.
//!
//! The library holds everything but the CLI glue, so it can be tested without
//! the binary: sources produce [`event::model::Event`]s, the [`pipeline`]
//! feeds them through state and detectors into [`sinks`].

pub mod cgroup;
pub mod commands;
pub mod detect;
pub mod dns;
pub mod event;
pub mod host;
pub mod pipeline;
pub mod policy;
pub mod probes;
pub mod proctree;
pub mod report;
pub mod session;
pub mod sinks;
pub mod source;
#[cfg(test)]
pub(crate) mod testkit;

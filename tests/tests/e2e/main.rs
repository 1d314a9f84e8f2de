//! agentwatch's end-to-end tests: the real daemon, the real kernel, real
//! cgroups, users, DNS and network namespaces. They need root (CI runs
//! them as root through `cargo xtask test`) and run one at a time
//! (`--test-threads=1`): each loads eBPF programs.
//!
//! Tests are named after the behaviour they guard; every assertion's
//! message shows what was seen.

mod detection;
mod fixtures;
mod forensics;
mod trace;

//! Fixtures for agentwatch's end-to-end tests: real cgroups, a real
//! unprivileged user with decoy secrets, a local DNS server, network
//! namespaces with listeners, journald, and the daemon itself.
//!
//! Every fixture cleans up on drop, names what it creates uniquely (pid of
//! the test process plus a counter, so tests may run in any order and
//! several test processes side by side), and removes what a killed earlier
//! run left behind the first time it is used. Most need root; tests call
//! [`require_root!`] first, which skips with a printed reason when not root,
//! except under CI (`CI=true`), where a missing root is a failure.
//!
//! Traffic only ever goes to loopback or to network namespaces created here.

pub mod cgroup;
pub mod daemon;
pub mod dns;
pub mod events;
pub mod journald;
pub mod net;
pub mod user;
pub mod util;

pub use cgroup::Cgroup;
pub use daemon::{Daemon, Finished};
pub use dns::Dns;
pub use journald::Journald;
pub use net::{NetNs, TcpLoopback, UdpLoopback};
pub use user::AgentUser;
pub use util::{is_root, root_or_skip, unique};

/// Return from the current test, with a printed reason, when not root;
/// fail instead under CI, where the end-to-end tests must run.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::root_or_skip() {
            return;
        }
    };
}

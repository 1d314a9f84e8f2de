//! Loading the kernel programs: what they need from the running kernel (BTF offsets).

pub mod btf;
pub mod loader;

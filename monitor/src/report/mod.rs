//! Reports: sessions rendered for people (`replay --timeline`) and what a
//! replay shows (`--pid`, `--rule`, `--since`, `--until`).

pub mod filter;
pub mod timeline;

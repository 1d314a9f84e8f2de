//! Events: the owned model and the decoder from kernel records.

pub mod decode;
pub mod model;

//! Sources: where events come from. The live source reads the kernel's ring
//! buffer; the replay source reads a recorded session. Both hand the same
//! [`crate::event::model::Event`]s to the one [`crate::pipeline::Pipeline`].

pub mod live;
pub mod procscan;
pub mod replay;

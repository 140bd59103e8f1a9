//! The bottom layer: what every other module may use and that uses none of them
//! (atomic file writes, the frame of every plot). [`crate::scenario`] and
//! [`crate::signing`] are at this level too.

pub mod fs;
pub mod plot;

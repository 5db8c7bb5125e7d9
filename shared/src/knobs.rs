//! Which knob sets which image (being moved here from `retarget`, which re-exports it meanwhile).

pub mod charts;
pub mod config;
pub mod stacks;

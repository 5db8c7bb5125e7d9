//! `kkp-shared`: everything the `kubectl kkp` plugins do, behind thin binaries.
//!
//! Data flows one way: sources are *discovered* into findings (an image plus why it is needed), findings
//! become a [`plan::Plan`] (source → target, deduplicated, collisions refused), and a plan is *acted* on
//! (printed, copied to a registry, archived). Each module opens with a note on why it exists and what it
//! must not know about.

pub mod audit;
pub mod binaries;
pub mod cli;
pub mod copy;
pub mod diff;
pub mod discover;
pub mod gotmpl;
pub mod interrupt;
pub mod knobs;
pub mod kube;
pub mod mirror;
pub mod output;
pub mod plan;
pub mod reference;
pub mod registry;
pub mod retarget;
pub mod seedproxy;
pub mod yamledit;

//! The one integration-test binary: every CLI and end-to-end test is a module below.

mod support;

mod cli_addons;
mod cli_addons_image;
mod cli_archive;
mod cli_attachments;
mod cli_audit;
mod cli_binaries;
mod cli_candidates;
mod cli_copy;
mod cli_crosscheck;
mod cli_discovery;
mod cli_faults;
mod cli_hostile;
mod cli_kkp;
mod cli_mirror;
mod cli_mirror_live;
mod cli_packaging;
mod cli_protocol;
mod cli_retarget;
mod cli_retarget_live;
mod cli_seedproxy;
mod fuzz_props;

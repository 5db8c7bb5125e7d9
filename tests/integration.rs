//! The one integration-test binary: every CLI and end-to-end test is a module below.

mod support;

mod cli_mirror;
mod cli_seedproxy;

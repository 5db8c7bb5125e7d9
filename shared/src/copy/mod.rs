//! Copying a plan into a registry or an archive: blobs first, manifests after, the tag last.
//!
//! Knows registries and plans, never charts or KKP.

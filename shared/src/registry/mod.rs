//! A thin OCI distribution client on `reqwest`: auth, retries, TLS per registry, raw manifests, blobs.
//!
//! Knows nothing of KKP or plans.

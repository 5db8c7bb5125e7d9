//! The embedded control-plane catalog: per KKP release, each component's image and when KKP uses it.

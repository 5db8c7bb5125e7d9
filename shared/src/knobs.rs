//! Which knob sets which image: the values keys a chart's images are decided by (learned from the chart
//! and proved by a sentinel render), the KubermaticConfiguration's repository fields with KKP's
//! defaults, the Seed datacenter node fields, which of KKP's charts read which values file, and how a
//! chart is rendered and the images of a render found.
//!
//! One home for what `retarget` (which edits these knobs) and `audit` (which names the knob behind an
//! image it finds in a cluster) both need to know. Knows nothing of edit rules, diffs, files being
//! written, registries on the wire or the API server; imports nothing from the commands that use it.

pub mod charts;
pub mod config;
pub mod render;
pub mod seed;
pub mod stacks;

use std::path::PathBuf;

pub use charts::{
    ImageKey, KeyKind, chart_dirs, chart_name, confirm_by_render, learn_chart, learn_charts, learn_charts_in,
};
pub use config::{
    ConfigKnob, Edition, RepositoryField, ValueSource, detect_edition, effective_knobs, is_under,
};
pub use render::{Leak, TIMED_OUT, glob_match, images_in_render, render, rendered_images};
pub use seed::{NODE_FIELDS, NodeKnob};
pub use stacks::Stack;

pub(crate) use charts::par_map;

/// Why a chart could not be learned or rendered, or a stack not chosen.
#[derive(Debug, thiserror::Error)]
pub enum KnobsError {
    /// The request does not make sense (no chart of the stack below a directory, values files of two
    /// stacks together).
    #[error("{0}")]
    Usage(String),
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The sentinel values could not be written as YAML.
    #[error("{path}: {source}")]
    Edit {
        /// What was being written.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::yamledit::EditError,
    },
    /// A chart could not be read or rendered.
    #[error("chart {chart}: {message}")]
    Chart {
        /// Chart directory.
        chart: String,
        /// What went wrong.
        message: String,
    },
    /// No usable helm binary.
    #[error(transparent)]
    Helm(#[from] crate::discover::helm::HelmError),
}

//! Rendering Helm charts with a real `helm template`, in parallel, never touching the network.

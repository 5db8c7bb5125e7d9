//! The KubermaticConfiguration (`kubermatic.k8c.io/v1`): strict loading, KKP's defaults, image fields.

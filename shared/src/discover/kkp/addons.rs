//! KKP addons: Go text/templates rendered over the version × provider × CNI matrix, then scanned.

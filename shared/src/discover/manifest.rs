//! Finding images in rendered Kubernetes objects: pod specs, custom resources, args, env, ConfigMaps.

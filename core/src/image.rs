//! Facts about the `image` string the kubelet sends.

/// The registry host[:port] of a kubelet image: everything before the first
/// `/`, as kubelet's `parseRegistry` does (`registry.io:5000/a/b` ->
/// `registry.io:5000`). Used as the auth key of registry-wide credentials and
/// as the `Registry` cache key.
pub fn registry_of(image: &str) -> &str {
    image.split_once('/').map_or(image, |(host, _)| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_like_kubelet() {
        assert_eq!(registry_of("test.registry.io/foo/bar"), "test.registry.io");
        assert_eq!(
            registry_of("test.registry.io:8080/foo"),
            "test.registry.io:8080"
        );
        assert_eq!(registry_of("docker.io/library/nginx"), "docker.io");
        assert_eq!(registry_of("registry.io"), "registry.io");
    }
}

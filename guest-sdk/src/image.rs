//! Facts about the `image` string the kubelet sends.

/// The registry `host[:port]` of an image: everything before the first `/`,
/// as the kubelet computes it (`registry.io:5000/a/b` -> `registry.io:5000`).
/// This is the natural `match_key` of a registry-wide credential.
///
/// The same function exists in the host's core; it is repeated here so that
/// providers do not link the host's dependencies into their component.
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
        assert_eq!(
            registry_of("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app"),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com"
        );
        assert_eq!(registry_of("registry.io"), "registry.io");
        assert_eq!(registry_of(""), "");
    }
}

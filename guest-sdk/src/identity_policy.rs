//! The identity policy (config `identity`): which identity a request is
//! answered with. Falling back from the pod's identity to the node's is a
//! privilege decision, so it happens only when the operator said so, and
//! never after the pod's identity was tried and refused.

/// What the operator configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Only the pod's identity: fail without a token or without the opt-in.
    Pod,
    /// Only the node's identity; a token in the request is ignored.
    Node,
    /// The pod's identity when the request carries a token and the pod
    /// opted in, else the node's.
    PodThenNode,
}

/// The identity one request is answered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chosen {
    Pod,
    Node,
}

/// Parses config `identity`; unset or empty is `None` (the default: pod
/// when the request carries a token, else node).
pub fn parse(value: Option<&str>) -> Result<Option<Policy>, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some("pod") => Ok(Some(Policy::Pod)),
        Some("node") => Ok(Some(Policy::Node)),
        Some("podThenNode") => Ok(Some(Policy::PodThenNode)),
        Some(_) => Err(
            "config identity must be one of pod, node, podThenNode (the value is not shown)".into(),
        ),
    }
}

/// Decides. `has_token`: the request carries a service-account token;
/// `opted_in`: the pod opted in (its service account carries what the pod
/// identity needs). `missing` says what the opt-in is, for the error.
pub fn decide(
    policy: Option<Policy>,
    has_token: bool,
    opted_in: bool,
    missing: &str,
) -> Result<Chosen, String> {
    let pod_or_fail = |why_default: &str| {
        if !has_token {
            Err(format!(
                "identity policy pod{why_default}: the request carries no service-account token \
                 (set tokenAttributes in the kubelet's CredentialProviderConfig, or set config identity: node or podThenNode)"
            ))
        } else if !opted_in {
            Err(format!(
                "identity policy pod{why_default}: {missing} (or set config identity: podThenNode to use the node's identity for such pods)"
            ))
        } else {
            Ok(Chosen::Pod)
        }
    };
    match policy {
        Some(Policy::Node) => Ok(Chosen::Node),
        Some(Policy::Pod) => pod_or_fail(""),
        Some(Policy::PodThenNode) if has_token && opted_in => Ok(Chosen::Pod),
        Some(Policy::PodThenNode) => Ok(Chosen::Node),
        None if has_token => pod_or_fail(" (the default when the request carries a token)"),
        None => Ok(Chosen::Node),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_policies() {
        assert_eq!(parse(None), Ok(None));
        assert_eq!(parse(Some(" ")), Ok(None));
        assert_eq!(parse(Some("pod")), Ok(Some(Policy::Pod)));
        assert_eq!(parse(Some("node")), Ok(Some(Policy::Node)));
        assert_eq!(parse(Some("podThenNode")), Ok(Some(Policy::PodThenNode)));
        let error = parse(Some("Pod\u{1b}")).unwrap_err();
        assert!(error.contains("pod, node, podThenNode") && !error.contains('\u{1b}'));
    }

    #[test]
    fn decisions() {
        use Chosen::*;
        let d = |p, t, o| decide(p, t, o, "no opt-in annotation");
        // Default: pod with a token (and then the opt-in is required), node without.
        assert_eq!(d(None, true, true), Ok(Pod));
        assert!(
            d(None, true, false)
                .unwrap_err()
                .contains("no opt-in annotation")
        );
        assert_eq!(d(None, false, false), Ok(Node));
        assert_eq!(d(None, false, true), Ok(Node));
        // pod: never the node.
        assert_eq!(d(Some(Policy::Pod), true, true), Ok(Pod));
        assert!(
            d(Some(Policy::Pod), false, true)
                .unwrap_err()
                .contains("no service-account token")
        );
        assert!(
            d(Some(Policy::Pod), true, false)
                .unwrap_err()
                .contains("podThenNode")
        );
        // node: always the node.
        for (t, o) in [(true, true), (true, false), (false, false)] {
            assert_eq!(d(Some(Policy::Node), t, o), Ok(Node));
        }
        // podThenNode: the pod when it opted in, else the node.
        assert_eq!(d(Some(Policy::PodThenNode), true, true), Ok(Pod));
        assert_eq!(d(Some(Policy::PodThenNode), true, false), Ok(Node));
        assert_eq!(d(Some(Policy::PodThenNode), false, true), Ok(Node));
    }
}

//! The AWS ECR plugin end to end through the host, against loopback fakes
//! of STS, ECR and IMDS that check every field and header, verify the SigV4
//! signature with the test secret and answer in AWS's real shapes.

use crate::support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::kubelet::{Exec, Provider, RequestSpec, V1};
use support::server::{Reply, Seen, TestCa, TestServer};
use support::workspace::{Workspace, host_binary};
use wcp_test_artifacts as artifacts;

const REGISTRY: &str = "123456789012.dkr.ecr.us-west-2.amazonaws.com";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/ecr-pull";
const ANNOTATION: &str = "eks.amazonaws.com/ecr-role-arn";
const ECR_TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
const PUBLIC_TARGET: &str = "SpencerFrontendService.GetAuthorizationToken";
/// ECR tokens live 12 hours.
const TOKEN_LIFETIME: u64 = 12 * 3600;

/// (access key id, secret, session token) the fakes know.
const STS_KEY: (&str, &str, Option<&str>) = (
    "ASIASTSEXAMPLE",
    "sts/Secret+Key",
    Some("sts-session-token"),
);
const STATIC_KEY: (&str, &str, Option<&str>) = ("AKIASTATICEXAMPLE", "static-secret", None);
const IMDS_KEY: (&str, &str, Option<&str>) =
    ("ASIAIMDSEXAMPLE", "imds-secret", Some("imds-session-token"));
const IMDS_SESSION: &str = "AQAEAimds-session";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token shaped like a projected service-account token for STS.
fn sa_token(name: &str, uid: &str) -> String {
    support::tokens::sa_token("sts.amazonaws.com", "team", name, uid, "pod-uid")
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Decodes `application/x-www-form-urlencoded`, keeping order.
fn form_decode(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    };
    std::str::from_utf8(body)
        .unwrap()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn xml_reply(status: u16, body: String) -> Reply {
    Reply::Full(
        status,
        vec![("content-type".into(), "text/xml".into())],
        body.into_bytes(),
    )
}

fn json_reply(status: u16, body: String) -> Reply {
    Reply::Full(
        status,
        vec![("content-type".into(), "application/x-amz-json-1.1".into())],
        body.into_bytes(),
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StsMode {
    Ok,
    ExpiredToken,
}

/// The loopback AWS: STS and ECR over TLS with a test CA, IMDS over HTTP.
struct FakeAws {
    ca: TestCa,
    sts: TestServer,
    ecr: TestServer,
    imds: TestServer,
    /// Every check a fake found violated; must stay empty.
    problems: Arc<Mutex<Vec<String>>>,
}

impl FakeAws {
    /// `token`: the web identity token STS must receive; `throttles`: how
    /// many ECR calls answer `ThrottlingException` first.
    fn start(token: &str, sts_mode: StsMode, throttles: usize) -> Self {
        let ca = TestCa::new();
        let problems = Arc::new(Mutex::new(Vec::new()));

        let expected_token = token.to_string();
        let report = problems.clone();
        let sts = TestServer::https(&ca, move |seen| {
            let mut wrong = Vec::new();
            if seen.method != "POST" || seen.path != "/" {
                wrong.push(format!("STS: {} {}", seen.method, seen.path));
            }
            if header(seen, "content-type") != Some("application/x-www-form-urlencoded") {
                wrong.push(format!(
                    "STS: content-type {:?}",
                    header(seen, "content-type")
                ));
            }
            if header(seen, "authorization").is_some() {
                wrong.push("STS: AssumeRoleWithWebIdentity must be unsigned".into());
            }
            let fields = form_decode(&seen.body);
            let want: Vec<(String, String)> = [
                ("Action", "AssumeRoleWithWebIdentity"),
                ("Version", "2011-06-15"),
                ("RoleArn", ROLE_ARN),
                ("RoleSessionName", "ecr-credential-provider"),
                ("WebIdentityToken", expected_token.as_str()),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            if fields != want {
                // Never echo the token, even into a test failure.
                wrong.push(format!(
                    "STS: form fields {:?}",
                    fields.iter().map(|(k, _)| k).collect::<Vec<_>>()
                ));
            }
            if !wrong.is_empty() {
                report.lock().unwrap().extend(wrong.clone());
                return xml_reply(
                    400,
                    format!(
                        "<ErrorResponse><Error><Type>Sender</Type><Code>ValidationError</Code><Message>{}</Message></Error></ErrorResponse>",
                        wrong.join("; ")
                    ),
                );
            }
            if sts_mode == StsMode::ExpiredToken {
                return xml_reply(
                    400,
                    "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>ExpiredTokenException</Code><Message>Token expired: current date/time 1767229200 must be before the expiration date/time 1767225600</Message></Error><RequestId>4b3e2f7a-expired</RequestId></ErrorResponse>".into(),
                );
            }
            let expiration = rfc3339(now() + 3600);
            let (id, secret, session) = STS_KEY;
            xml_reply(
                200,
                format!(
                    r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:team:puller</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/ecr-pull/ecr-credential-provider</Arn>
      <AssumedRoleId>AROA3XFRBF535PLBIFPI4:ecr-credential-provider</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>{}</SessionToken>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <Expiration>{expiration}</Expiration>
      <AccessKeyId>{id}</AccessKeyId>
    </Credentials>
    <Provider>arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/EXAMPLE</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#,
                    session.unwrap()
                ),
            )
        });

        let report = problems.clone();
        let calls = Arc::new(AtomicUsize::new(0));
        let ecr = TestServer::https(&ca, move |seen| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            match check_ecr_request(seen) {
                Err(why) => {
                    report.lock().unwrap().push(why.clone());
                    json_reply(
                        403,
                        serde_json::json!({"__type": "InvalidSignatureException", "message": why})
                            .to_string(),
                    )
                }
                Ok(_) if n < throttles => json_reply(
                    400,
                    r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.into(),
                ),
                Ok((access_key_id, public)) => {
                    let token = {
                        use base64::Engine;
                        base64::engine::general_purpose::STANDARD
                            .encode(format!("AWS:{}", password_for(&access_key_id)))
                    };
                    let expires_at = format!("{}.573", now() + TOKEN_LIFETIME);
                    let data = format!(
                        r#"{{"authorizationToken":"{token}","expiresAt":{expires_at},"proxyEndpoint":"https://{REGISTRY}"}}"#
                    );
                    json_reply(
                        200,
                        if public {
                            format!(r#"{{"authorizationData":{data}}}"#)
                        } else {
                            format!(r#"{{"authorizationData":[{data}]}}"#)
                        },
                    )
                }
            }
        });

        let report = problems.clone();
        let imds = TestServer::http(move |seen| {
            let token_ok = header(seen, "x-aws-ec2-metadata-token") == Some(IMDS_SESSION);
            match (seen.method.as_str(), seen.path.as_str()) {
                ("PUT", "/latest/api/token")
                    if header(seen, "x-aws-ec2-metadata-token-ttl-seconds") == Some("21600") =>
                {
                    Reply::text(200, IMDS_SESSION)
                }
                ("GET", "/latest/meta-data/iam/security-credentials/") if token_ok => {
                    Reply::text(200, "node-role")
                }
                ("GET", "/latest/meta-data/iam/security-credentials/node-role") if token_ok => {
                    let (id, secret, session) = IMDS_KEY;
                    json_reply(
                        200,
                        serde_json::json!({
                            "Code": "Success", "LastUpdated": rfc3339(now()), "Type": "AWS-HMAC",
                            "AccessKeyId": id, "SecretAccessKey": secret, "Token": session,
                            "Expiration": rfc3339(now() + 6 * 3600)
                        })
                        .to_string(),
                    )
                }
                (method, path) => {
                    report.lock().unwrap().push(format!(
                        "IMDS: unexpected {method} {path} (token ok: {token_ok})"
                    ));
                    Reply::text(401, "")
                }
            }
        });
        Self {
            ca,
            sts,
            ecr,
            imds,
            problems,
        }
    }

    /// A host config for the plugin with the endpoints pointed at the
    /// fakes; `config` and `grants` add YAML flow-map entries.
    fn config(&self, ws: &Workspace, config: &str, grants: &str) -> PathBuf {
        let bundle = self.ca.write_bundle(ws.path());
        ws.write(
            "host-config.yaml",
            format!(
                "{}tls:\n  caBundle: {}\nplugins:\n  - name: ecr\n    module: {}\n    matchImages: [\"*.dkr.ecr.*.amazonaws.com\", \"public.ecr.aws\", \"registry.example.com\"]\n    config: {{stsEndpoint: \"{}\", ecrEndpoint: \"{}\"{config}}}\n    grants: {{outbound: [\"{}\", \"{}\"], serviceAccountToken: true{grants}}}\n",
                ws.header(),
                bundle.display(),
                artifacts::ECR_PLUGIN,
                self.sts.url("/"),
                self.ecr.url("/"),
                self.sts.url(""),
                self.ecr.url(""),
            ),
        )
    }

    fn assert_no_problems(&self) {
        let problems = self.problems.lock().unwrap();
        assert!(problems.is_empty(), "the fakes saw: {problems:#?}");
    }
}

/// The password the fake ECR issues to an access key.
fn password_for(access_key_id: &str) -> String {
    format!("ecr-password-for-{access_key_id}")
}

/// Checks a `GetAuthorizationToken` request; returns the access key id it
/// was signed with and whether it was for ECR Public.
fn check_ecr_request(seen: &Seen) -> Result<(String, bool), String> {
    let expect = |cond: bool, what: String| if cond { Ok(()) } else { Err(what) };
    expect(
        seen.method == "POST" && seen.path == "/",
        format!("ECR: {} {}", seen.method, seen.path),
    )?;
    expect(
        header(seen, "content-type") == Some("application/x-amz-json-1.1"),
        format!("ECR: content-type {:?}", header(seen, "content-type")),
    )?;
    expect(seen.body == b"{}", "ECR: body is not {}".into())?;
    let target = header(seen, "x-amz-target").unwrap_or_default();
    let public = target == PUBLIC_TARGET;
    expect(
        target == ECR_TARGET || public,
        format!("ECR: X-Amz-Target {target:?}"),
    )?;
    let keys = [STS_KEY, STATIC_KEY, IMDS_KEY];
    let key_of = |id: &str| keys.into_iter().find(|(k, _, _)| *k == id);
    let verified = support::sigv4::verify(seen, |id| key_of(id).map(|(_, s, _)| s.to_string()))
        .map_err(|e| format!("ECR: {e}"))?;
    let (want_region, want_service) = if public {
        ("us-east-1", "ecr-public")
    } else {
        ("us-west-2", "ecr")
    };
    expect(
        verified.region == want_region && verified.service == want_service,
        format!(
            "ECR: signed for {}/{}, want {want_region}/{want_service}",
            verified.region, verified.service
        ),
    )?;
    for name in ["content-type", "host", "x-amz-date", "x-amz-target"] {
        expect(
            verified.signed_headers.iter().any(|h| h == name),
            format!("ECR: {name} is not signed"),
        )?;
    }
    let (_, _, session) = key_of(&verified.access_key_id).unwrap();
    let sent = header(seen, "x-amz-security-token");
    expect(
        sent == session,
        format!(
            "ECR: X-Amz-Security-Token {sent:?} for {}",
            verified.access_key_id
        ),
    )?;
    expect(
        session.is_none()
            || verified
                .signed_headers
                .iter()
                .any(|h| h == "x-amz-security-token"),
        "ECR: the session token is not signed".into(),
    )?;
    let amz_date = header(seen, "x-amz-date").unwrap_or_default();
    expect(
        (0..=60).any(|ago| amz_date == sigv4_date(now() - ago)),
        format!("ECR: X-Amz-Date {amz_date} is not within the last minute"),
    )?;
    Ok((verified.access_key_id, public))
}

fn rfc3339(unix: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
    humantime::format_rfc3339_seconds(time).to_string()
}

fn sigv4_date(unix: u64) -> String {
    rfc3339(unix).replace(['-', ':'], "")
}

/// The one credential of a successful answer, and the answer.
fn credential(exec: &Exec) -> (String, support::strict::Auth, support::strict::Accepted) {
    assert!(exec.success, "{exec:#?}");
    let resp = support::strict::decode(&exec.stdout, V1).unwrap();
    assert_eq!(resp.auth.len(), 1, "{:?}", resp.auth);
    let (key, auth) = resp.auth.iter().next().unwrap();
    (key.clone(), auth.clone(), resp)
}

fn duration_secs(resp: &support::strict::Accepted) -> u64 {
    wcp_core::duration::parse_go_duration(resp.cache_duration.as_deref().unwrap())
        .unwrap()
        .as_secs()
}

fn sa_request(image: &str, token: &str) -> RequestSpec {
    RequestSpec::new(V1, image)
        .token(token)
        .annotation(ANNOTATION, ROLE_ARN)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[test]
fn service_account_mode_end_to_end_and_timings() {
    let token = sa_token("puller", "uid-1");
    let aws = FakeAws::start(&token, StsMode::Ok, 0);
    let ws = Workspace::new();
    let config = aws.config(&ws, "", "");
    let provider = Provider::new(host_binary(), &config);

    let first = provider.exec(&sa_request(&format!("{REGISTRY}/team/app"), &token));
    let (key, auth, resp) = credential(&first);
    assert_eq!(key, REGISTRY);
    assert_eq!(auth.username, "AWS");
    assert_eq!(auth.password, password_for(STS_KEY.0));
    assert_eq!(resp.cache_key_type, "Registry");
    // expiresAt minus the host's 60 s margin.
    let secs = duration_secs(&resp);
    assert!(
        (TOKEN_LIFETIME - 62..=TOKEN_LIFETIME - 59).contains(&secs),
        "{:?}",
        resp.cache_duration
    );
    assert_eq!((aws.sts.seen().len(), aws.ecr.seen().len()), (1, 1));
    aws.assert_no_problems();

    // Cold requests with the component already compiled: another forwarded
    // annotation is another cache key, so each is a miss (STS + ECR over TLS).
    let mut cold = Vec::new();
    for i in 0..5 {
        let exec = provider.exec(
            &sa_request(&format!("{REGISTRY}/team/app"), &token)
                .annotation("example.com/nonce", &i.to_string()),
        );
        credential(&exec);
        cold.push(exec.elapsed);
    }
    assert_eq!((aws.sts.seen().len(), aws.ecr.seen().len()), (6, 6));
    // Cache hits: other images of the same registry, same service account.
    let mut hits = Vec::new();
    for i in 0..5 {
        let exec = provider.exec(&sa_request(&format!("{REGISTRY}/team/app-{i}"), &token));
        let (_, auth, _) = credential(&exec);
        assert_eq!(auth.password, password_for(STS_KEY.0));
        hits.push(exec.elapsed);
    }
    assert_eq!((aws.sts.seen().len(), aws.ecr.seen().len()), (6, 6));
    aws.assert_no_problems();
    println!(
        "ECR plugin, debug host: first exec (compiles the component) {:?}; cold request (STS + ECR over TLS) median {:?} {cold:?}; cache hit median {:?} {hits:?}",
        first.elapsed,
        median(cold.clone()),
        median(hits.clone())
    );
}

#[test]
fn role_from_config_and_custom_annotation() {
    let token = sa_token("puller", "uid-1");
    let aws = FakeAws::start(&token, StsMode::Ok, 0);
    let ws = Workspace::new();
    // The role from config when the annotation is missing.
    let config = aws.config(&ws, &format!(", roleArn: \"{ROLE_ARN}\""), "");
    let exec = Provider::new(host_binary(), &config)
        .exec(&RequestSpec::new(V1, &format!("{REGISTRY}/app")).token(&token));
    assert_eq!(credential(&exec).1.password, password_for(STS_KEY.0));

    // A configured annotation key.
    let ws = Workspace::new();
    let config = aws.config(&ws, ", roleArnAnnotation: \"example.com/ecr-role\"", "");
    let exec = Provider::new(host_binary(), &config).exec(
        &RequestSpec::new(V1, &format!("{REGISTRY}/app"))
            .token(&token)
            .annotation("example.com/ecr-role", ROLE_ARN),
    );
    assert_eq!(credential(&exec).1.password, password_for(STS_KEY.0));
    assert_eq!(aws.sts.seen().len(), 2);
    aws.assert_no_problems();
}

#[test]
fn node_mode_with_static_keys_from_the_granted_environment() {
    let aws = FakeAws::start("unused", StsMode::Ok, 0);
    let ws = Workspace::new();
    let config = aws.config(
        &ws,
        "",
        ", env: [AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN]",
    );
    let provider = Provider::new(host_binary(), &config)
        .env("AWS_ACCESS_KEY_ID", STATIC_KEY.0)
        .env("AWS_SECRET_ACCESS_KEY", STATIC_KEY.1);
    let exec = provider.exec(&RequestSpec::new(V1, &format!("{REGISTRY}/app")));
    let (key, auth, _) = credential(&exec);
    assert_eq!(key, REGISTRY);
    assert_eq!(auth.password, password_for(STATIC_KEY.0));

    // ECR Public: service ecr-public in us-east-1, its own target and shape.
    let exec = provider.exec(&RequestSpec::new(V1, "public.ecr.aws/team/app"));
    let (key, auth, _) = credential(&exec);
    assert_eq!(key, "public.ecr.aws");
    assert_eq!(auth.password, password_for(STATIC_KEY.0));
    let public = aws.ecr.seen();
    assert_eq!(
        header(public.last().unwrap(), "x-amz-target"),
        Some(PUBLIC_TARGET)
    );

    assert!(aws.sts.seen().is_empty());
    assert!(aws.imds.seen().is_empty());
    aws.assert_no_problems();

    // The fake really verifies: a wrong secret is refused (a fresh cache,
    // or the answer above would be served).
    let ws = Workspace::new();
    let config = aws.config(
        &ws,
        "",
        ", env: [AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN]",
    );
    let wrong = Provider::new(host_binary(), &config)
        .env("AWS_ACCESS_KEY_ID", STATIC_KEY.0)
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .exec(&RequestSpec::new(V1, &format!("{REGISTRY}/app")));
    let line = wrong.assert_clean_failure("InvalidSignatureException");
    assert!(line.contains("unauthorized"), "{line}");
    assert!(!line.contains("not-the-secret"), "{line}");
}

#[test]
fn node_mode_with_the_instance_role_from_imds() {
    let aws = FakeAws::start("unused", StsMode::Ok, 0);
    let ws = Workspace::new();
    let imds = aws.imds.url("");
    let bundle = aws.ca.write_bundle(ws.path());
    let config = ws.write(
        "host-config.yaml",
        format!(
            "{}tls:\n  caBundle: {}\nplugins:\n  - name: ecr\n    module: {}\n    matchImages: [\"*.dkr.ecr.*.amazonaws.com\"]\n    config: {{ecrEndpoint: \"{}\", imdsEndpoint: \"{imds}\"}}\n    grants: {{outbound: [\"{}\", \"{imds}\"]}}\n",
            ws.header(),
            bundle.display(),
            artifacts::ECR_PLUGIN,
            aws.ecr.url("/"),
            aws.ecr.url(""),
        ),
    );
    let exec = Provider::new(host_binary(), &config)
        .exec(&RequestSpec::new(V1, &format!("{REGISTRY}/app")));
    let (_, auth, _) = credential(&exec);
    assert_eq!(auth.password, password_for(IMDS_KEY.0));
    let calls: Vec<String> = aws
        .imds
        .seen()
        .iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    assert_eq!(
        calls,
        [
            "PUT /latest/api/token",
            "GET /latest/meta-data/iam/security-credentials/",
            "GET /latest/meta-data/iam/security-credentials/node-role"
        ]
    );
    aws.assert_no_problems();

    // Without imdsEndpoint the default IP is neither declared nor granted:
    // one clear line telling the operator what to set.
    let ws = Workspace::new();
    let config = ws.write(
        "host-config.yaml",
        format!(
            "{}tls:\n  caBundle: {}\nplugins:\n  - name: ecr\n    module: {}\n    matchImages: [\"*.dkr.ecr.*.amazonaws.com\"]\n    config: {{ecrEndpoint: \"{}\"}}\n    grants: {{outbound: [\"{}\"]}}\n",
            ws.header(),
            aws.ca.write_bundle(ws.path()).display(),
            artifacts::ECR_PLUGIN,
            aws.ecr.url("/"),
            aws.ecr.url(""),
        ),
    );
    let exec = Provider::new(host_binary(), &config)
        .exec(&RequestSpec::new(V1, &format!("{REGISTRY}/app")));
    exec.assert_clean_failure("set config imdsEndpoint");
}

#[test]
fn fifty_concurrent_images_of_one_registry_make_one_sts_and_one_ecr_call() {
    let token = sa_token("puller", "uid-1");
    let aws = FakeAws::start(&token, StsMode::Ok, 0);
    let ws = Workspace::new();
    let config = aws.config(&ws, "", "");
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let config = config.clone();
            let request = sa_request(&format!("{REGISTRY}/team/app-{i}"), &token);
            std::thread::spawn(move || Provider::new(host_binary(), &config).exec(&request))
        })
        .collect();
    let mut passwords = BTreeMap::new();
    for handle in handles {
        let exec = handle.join().unwrap();
        let (key, auth, _) = credential(&exec);
        assert_eq!(key, REGISTRY);
        *passwords.entry(auth.password).or_insert(0) += 1;
    }
    println!(
        "50 concurrent ECR execs: {} STS and {} ECR call(s)",
        aws.sts.seen().len(),
        aws.ecr.seen().len()
    );
    assert_eq!(
        (aws.sts.seen().len(), aws.ecr.seen().len()),
        (1, 1),
        "{passwords:?}"
    );
    assert_eq!(passwords.get(&password_for(STS_KEY.0)), Some(&50));
    aws.assert_no_problems();
}

#[test]
fn throttling_is_retried_then_succeeds() {
    let token = sa_token("puller", "uid-1");
    let aws = FakeAws::start(&token, StsMode::Ok, 1);
    let ws = Workspace::new();
    let config = aws.config(&ws, "", "");
    let exec =
        Provider::new(host_binary(), &config).exec(&sa_request(&format!("{REGISTRY}/app"), &token));
    assert_eq!(credential(&exec).1.password, password_for(STS_KEY.0));
    assert_eq!((aws.sts.seen().len(), aws.ecr.seen().len()), (1, 2));
    aws.assert_no_problems();

    // Throttled every time: three attempts, then one clear line.
    let aws = FakeAws::start(&token, StsMode::Ok, usize::MAX);
    let ws = Workspace::new();
    let config = aws.config(&ws, "", "");
    let exec =
        Provider::new(host_binary(), &config).exec(&sa_request(&format!("{REGISTRY}/app"), &token));
    let line = exec.assert_clean_failure("ThrottlingException");
    println!("always throttled: {line}");
    assert!(line.contains("3 attempts"), "{line}");
    assert_eq!(aws.ecr.seen().len(), 3);
    aws.assert_no_problems();
}

#[test]
fn expired_token_is_one_clear_line_and_the_token_never_appears_in_logs() {
    let token = sa_token("puller", "uid-1");
    let aws = FakeAws::start(&token, StsMode::ExpiredToken, 0);
    let ws = Workspace::new();
    let config = aws.config(&ws, "", "");
    let request = sa_request(&format!("{REGISTRY}/app"), &token);
    let exec = Provider::new(host_binary(), &config).exec(&request);
    let line = exec.assert_clean_failure("ExpiredTokenException");
    println!("expired token: {line}");
    assert!(line.contains("unauthorized"), "{line}");
    assert!(aws.ecr.seen().is_empty());

    // With debug logging, on failure and on success.
    let verbose = Provider::new(host_binary(), &config).env("WCP_LOG", "debug");
    let failed = verbose.exec(&request);
    assert!(!failed.success);
    let ok_aws = FakeAws::start(&token, StsMode::Ok, 0);
    let ok_ws = Workspace::new();
    let ok_config = ok_aws.config(&ok_ws, "", "");
    let ok = Provider::new(host_binary(), &ok_config)
        .env("WCP_LOG", "debug")
        .exec(&request);
    credential(&ok);
    let signature = token.rsplit('.').next().unwrap();
    for (what, text) in [
        ("stderr", exec.stderr.clone()),
        ("debug stderr", failed.stderr.clone()),
        ("debug stderr on success", ok.stderr.clone()),
        (
            "audit log",
            std::fs::read_to_string(ws.path().join("audit.jsonl")).unwrap_or_default(),
        ),
        (
            "audit log on success",
            std::fs::read_to_string(ok_ws.path().join("audit.jsonl")).unwrap_or_default(),
        ),
    ] {
        assert!(
            !text.contains(&token) && !text.contains(signature),
            "the token appears in the {what}:\n{text}"
        );
    }
    assert!(
        failed.stderr.lines().count() > 1,
        "debug logging produced nothing: {}",
        failed.stderr
    );
    aws.assert_no_problems();
    ok_aws.assert_no_problems();
}

#[test]
fn images_outside_ecr_get_no_credentials() {
    let aws = FakeAws::start("unused", StsMode::Ok, 0);
    let ws = Workspace::new();
    let config = aws.config(&ws, "", "");
    let exec = Provider::new(host_binary(), &config)
        .exec(&RequestSpec::new(V1, "registry.example.com/app"));
    assert!(exec.success, "{exec:#?}");
    let resp = support::strict::decode(&exec.stdout, V1).unwrap();
    assert!(resp.auth.is_empty(), "{:?}", resp.auth);
    assert!(aws.sts.seen().is_empty() && aws.ecr.seen().is_empty());
}

/// Benchmark case (d) of `./scripts/bench`, not a test: it runs only with
/// `--ignored` and the binaries named in `WCP_BENCH_HOST` (a release host)
/// and `WCP_BENCH_NATIVE` (the native baseline provider). Interleaved
/// rounds of: the native provider, a cold ECR request through the host (a
/// new forwarded annotation each time, so STS + ECR over TLS), and a cache
/// hit. Prints medians, p95 and ratios; asserts no time.
#[test]
#[ignore = "benchmark: run through ./scripts/bench"]
fn bench_ecr_release() {
    let host = std::env::var("WCP_BENCH_HOST").expect("WCP_BENCH_HOST: a release host binary");
    let native = std::env::var("WCP_BENCH_NATIVE").expect("WCP_BENCH_NATIVE: the native baseline");
    let runs: usize = std::env::var("WCP_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let token = sa_token("puller", "uid-1");
    let aws = FakeAws::start(&token, StsMode::Ok, 0);
    let ws = Workspace::new();
    let config = aws.config(&ws, "", "");
    // A config file is snapshotted for the front once it is two seconds
    // old (host/src/config_snapshot.rs); the warm-up then writes it.
    std::thread::sleep(Duration::from_millis(2100));
    let provider = Provider::new(&host, &config);
    let baseline = Provider {
        binary: native.into(),
        args: Vec::new(),
        env: Vec::new(),
        wrapper: Vec::new(),
    };
    let image = format!("{REGISTRY}/team/app");
    // Warm-up: compiles the component, fills the cache for the hit case.
    credential(&provider.exec(&sa_request(&image, &token)));
    let (mut a, mut d, mut hit) = (Vec::new(), Vec::new(), Vec::new());
    // The fakes run in this process and do nothing else while an exec runs:
    // this process's CPU time across a cold exec is what the fakes spent
    // serving it (TLS handshakes, handlers), the rest of the wall time the
    // host's own share (its CPU time is reported beside it).
    let (mut served, mut host_cpu, mut share) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let exec = baseline.exec(&RequestSpec::new(V1, &image));
        assert!(exec.success, "{exec:#?}");
        a.push(exec.elapsed);
        let (self_before, children_before) =
            (cpu_time(libc::RUSAGE_SELF), cpu_time(libc::RUSAGE_CHILDREN));
        let exec = provider
            .exec(&sa_request(&image, &token).annotation("example.com/nonce", &i.to_string()));
        let fakes = cpu_time(libc::RUSAGE_SELF).saturating_sub(self_before);
        served.push(fakes);
        host_cpu.push(cpu_time(libc::RUSAGE_CHILDREN).saturating_sub(children_before));
        share.push(exec.elapsed.saturating_sub(fakes));
        credential(&exec);
        d.push(exec.elapsed);
        let exec = provider.exec(&sa_request(&format!("{REGISTRY}/team/app-{i}"), &token));
        credential(&exec);
        hit.push(exec.elapsed);
    }
    aws.assert_no_problems();
    let p95 = |mut v: Vec<Duration>| {
        v.sort();
        v[(v.len() - 1) * 95 / 100]
    };
    let base = median(a.clone());
    println!(
        "\n(d) ECR, release host against loopback STS + ECR over TLS (fakes built in the test profile)"
    );
    for (name, samples) in [
        ("(a) native static provider", a),
        ("(d) host + ECR plugin, cold (STS + ECR)", d),
        ("(d) host + ECR plugin, cache hit", hit),
        ("(d) cold: fakes serving (CPU, this process)", served),
        ("(d) cold: host's share (wall - fakes)", share),
        ("(d) cold: host CPU (user + sys)", host_cpu),
    ] {
        let med = median(samples.clone());
        println!(
            "{name:<44} {:>8.2}ms {:>8.2}ms {:>7.2}x",
            med.as_secs_f64() * 1000.0,
            p95(samples).as_secs_f64() * 1000.0,
            med.as_secs_f64() / base.as_secs_f64()
        );
    }
    println!(
        "({runs} interleaved rounds after one warm-up; columns: median, p95, ratio to native)"
    );
    // Where one more cold exec's time goes, as the host logs it.
    let traced = provider
        .env("WCP_LOG", "debug")
        .exec(&sa_request(&image, &token).annotation("example.com/nonce", "traced"));
    credential(&traced);
    println!("\n(d) phases of one cold exec (WCP_LOG=debug):");
    for line in traced.stderr.lines().filter(|l| {
        std::env::var_os("WCP_BENCH_ALL").is_some()
            || ["_us=", "us=", "handing over"]
                .iter()
                .any(|needle| l.contains(needle))
    }) {
        println!(
            "  {}",
            line.split_once("DEBUG ").map_or(line, |(_, rest)| rest)
        );
    }
}

/// User plus system CPU time of this process or of its waited-for children.
fn cpu_time(who: libc::c_int) -> Duration {
    // SAFETY: getrusage writes only into the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A plugin cannot tell "the kubelet sent no token" from "the operator did
/// not grant it"; the host's failure line names the setting that fixes
/// whichever it was, at the default log level.
#[test]
fn a_withheld_or_unsent_token_is_named_in_the_failure_line() {
    let token = sa_token("puller", "uid-1");
    let aws = FakeAws::start(&token, StsMode::Ok, 0);
    let ws = Workspace::new();
    let config = aws.config(&ws, &format!(", roleArn: \"{ROLE_ARN}\""), "");
    let withheld = ws.write(
        "withheld.yaml",
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("serviceAccountToken: true", "serviceAccountToken: false"),
    );
    let image = format!("{REGISTRY}/app");
    let exec =
        Provider::new(host_binary(), &withheld).exec(&RequestSpec::new(V1, &image).token(&token));
    let line = exec.assert_clean_failure("set grants.serviceAccountToken: true for plugin \"ecr\"");
    assert!(!line.contains(&token), "{line}");
    let exec = Provider::new(host_binary(), &config).exec(&RequestSpec::new(V1, &image));
    exec.assert_clean_failure("the kubelet sent none: set tokenAttributes");
    assert!(aws.sts.seen().is_empty());
}

/// 20 concurrent execs for 20 images of one registry and one identity
/// while ECR throttles every call: the flight's holder makes its three
/// attempts and the waiters share its failure instead of each making
/// three more. The same run without sharing is the baseline.
#[test]
fn a_failed_flight_is_shared_with_the_execs_waiting_for_it() {
    let token = sa_token("puller", "uid-1");
    let burst = |share: bool| {
        let aws = FakeAws::start(&token, StsMode::Ok, usize::MAX);
        let ws = Workspace::new();
        let mut config = aws.config(&ws, "", "");
        if !share {
            let text = std::fs::read_to_string(&config).unwrap();
            config = ws.write(
                "no-sharing.yaml",
                format!("{text}    cache: {{shareFailuresFor: 0s}}\n"),
            );
        }
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let config = config.clone();
                let request = sa_request(&format!("{REGISTRY}/team/app-{i}"), &token);
                std::thread::spawn(move || Provider::new(host_binary(), &config).exec(&request))
            })
            .collect();
        let execs: Vec<Exec> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let mut shared = 0;
        for exec in &execs {
            let line = exec.assert_clean_failure("ThrottlingException");
            assert!(!line.contains(&token), "{line}");
            shared += usize::from(line.contains("(shared: "));
        }
        let slowest = execs.iter().map(|e| e.elapsed).max().unwrap();
        (aws.ecr.seen().len(), shared, slowest)
    };
    let (calls, shared, slowest) = burst(true);
    let (baseline_calls, baseline_shared, baseline_slowest) = burst(false);
    println!(
        "20 concurrent execs, ECR always throttled: sharing {calls} ECR calls, {shared} shared failures, slowest exec {slowest:?}; \
         without sharing {baseline_calls} calls, slowest {baseline_slowest:?}"
    );
    assert_eq!(calls, 3, "one flight's attempts");
    assert_eq!(shared, 19);
    assert_eq!(baseline_shared, 0);
    assert!(baseline_calls > calls, "{baseline_calls}");
}

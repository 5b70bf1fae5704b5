//! Hostile: uses the raw `wasi:http` bindings, below the SDK, to make the
//! host allocate and hold state outside the plugin's linear memory. Config
//! `attack` picks the attack:
//!
//! - `fields`: creates header maps of 12 KB each (under the per-map limit)
//!   and keeps every one alive (the resource table and field limits must
//!   bound this).
//! - `bodies`: creates requests and writes to their bodies without ever
//!   sending them (the host buffers what was written).
//! - `parallel`: starts `count` requests to `target` at once and holds the
//!   responses; answers `ok=N refused=M` in the password.
//! - `userinfo`: requests `target` with `user:secret@` inserted into the
//!   authority; answers with the body the server returned.
//! - `random`: asks the host for 48 MiB of random bytes (more than the
//!   plugin's 32 MiB could ever hold).
//! - `long-strings`: creates 200 requests and sets their authority, path,
//!   method and scheme to 1 MiB strings, keeping every request; answers
//!   `accepted=N refused=M`.
//! - `env-echo`: fails with the granted `AWS_SECRET_ACCESS_KEY` and
//!   `AWS_REGION` in its error message.
//! - `from-list`: hands the host one list of 400,000 empty header
//!   entries, which lifted would cost the host several times its size.
//! - `idle`: nothing; the baseline the others are measured against.
//!
//! The loops are bounded so that a host without limits still ends.
use wcp_guest_sdk::bindings::wasi::http::outgoing_handler;
use wcp_guest_sdk::bindings::wasi::http::types::{
    Fields, FutureIncomingResponse, IncomingResponse, OutgoingRequest, Scheme,
};
use wcp_guest_sdk::{Credentials, Provider, ProviderError, Request, config, image};

struct HostState;

/// A header value near the largest a single field may be.
fn value() -> Vec<u8> {
    vec![b'v'; 4000]
}

fn fields() -> Result<String, ProviderError> {
    let mut kept = Vec::new();
    let value = value();
    for i in 0..1_000_000u32 {
        let fields = Fields::new();
        // 12 KB each: under the host's per-map limit, so only the number
        // of maps the host keeps can bound this.
        for j in 0..3u32 {
            if fields.append(&format!("x-h{j}"), &value).is_err() {
                break;
            }
        }
        kept.push(fields);
        if i % 10_000 == 0 {
            wcp_guest_sdk::log::log(
                wcp_guest_sdk::log::Level::Info,
                &format!("holding {} header maps", kept.len()),
            );
        }
    }
    Ok(format!("held {} header maps", kept.len()))
}

struct Target {
    https: bool,
    authority: String,
    path: String,
}

fn target() -> Result<Target, ProviderError> {
    let url = config::require("target")?;
    let (https, rest) = match url.split_once("://") {
        Some(("https", rest)) => (true, rest),
        Some(("http", rest)) => (false, rest),
        _ => return Err(ProviderError::Config("target must be http(s)".into())),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok(Target {
        https,
        authority: authority.to_string(),
        path: path.to_string(),
    })
}

fn request(target: &Target, authority: &str) -> Result<OutgoingRequest, ProviderError> {
    let request = OutgoingRequest::new(Fields::new());
    let scheme = if target.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let bad = |what: &str| ProviderError::Upstream(format!("host rejected the {what}"));
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| bad("scheme"))?;
    request
        .set_authority(Some(authority))
        .map_err(|()| bad("authority"))?;
    request
        .set_path_with_query(Some(&target.path))
        .map_err(|()| bad("path"))?;
    Ok(request)
}

fn bodies() -> Result<String, ProviderError> {
    let target = target()?;
    let chunk = vec![b'b'; 1 << 20];
    let mut kept = Vec::new();
    for _ in 0..100_000u32 {
        let request = request(&target, &target.authority)?;
        let body = request
            .body()
            .map_err(|()| ProviderError::Upstream("no body".into()))?;
        let stream = body
            .write()
            .map_err(|()| ProviderError::Upstream("no body stream".into()))?;
        // Write as much as the host accepts without blocking.
        for _ in 0..8 {
            match stream.check_write() {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let n = (n as usize).min(chunk.len());
                    if stream.write(&chunk[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        kept.push((request, body, stream));
    }
    Ok(format!("held {} unsent bodies", kept.len()))
}

fn wait(future: &FutureIncomingResponse) -> Option<IncomingResponse> {
    let ready = future.subscribe();
    loop {
        match future.get() {
            None => ready.block(),
            Some(Ok(Ok(response))) => return Some(response),
            Some(_) => return None,
        }
    }
}

fn parallel() -> Result<String, ProviderError> {
    let target = target()?;
    let count: usize = config::get("count")
        .and_then(|c| c.parse().ok())
        .unwrap_or(300);
    let mut futures = Vec::new();
    let mut refused = 0;
    for _ in 0..count {
        let request = request(&target, &target.authority)?;
        match outgoing_handler::handle(request, None) {
            Ok(future) => futures.push(future),
            Err(_) => refused += 1,
        }
    }
    // Hold every response (and so its connection) until all have arrived.
    let mut responses = Vec::new();
    for future in &futures {
        match wait(future) {
            Some(response) => responses.push(response),
            None => refused += 1,
        }
    }
    Ok(format!("ok={} refused={refused}", responses.len()))
}

fn userinfo() -> Result<String, ProviderError> {
    let target = target()?;
    let authority = format!("user:secret@{}", target.authority);
    let request = request(&target, &authority)?;
    let future = outgoing_handler::handle(request, None)
        .map_err(|e| ProviderError::Upstream(format!("refused: {e:?}")))?;
    let response = wait(&future).ok_or_else(|| ProviderError::Upstream("request failed".into()))?;
    drop(future);
    let body = response
        .consume()
        .map_err(|()| ProviderError::Upstream("no body".into()))?;
    let mut bytes = Vec::new();
    {
        let stream = body
            .stream()
            .map_err(|()| ProviderError::Upstream("no body stream".into()))?;
        while let Ok(chunk) = stream.blocking_read(4096) {
            bytes.extend_from_slice(&chunk);
        }
    }
    drop(body);
    drop(response);
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn long_strings() -> Result<String, ProviderError> {
    use wcp_guest_sdk::bindings::wasi::http::types::Method;
    let long = "a".repeat(1 << 20);
    let path = format!("/{long}");
    let method = Method::Other(long.clone());
    let scheme = Scheme::Other(long.clone());
    let (mut accepted, mut refused) = (0, 0);
    let mut kept = Vec::new();
    for _ in 0..200u32 {
        let request = OutgoingRequest::new(Fields::new());
        let outcomes = [
            request.set_authority(Some(&long)),
            request.set_path_with_query(Some(&path)),
            request.set_method(&method),
            request.set_scheme(Some(&scheme)),
        ];
        for outcome in outcomes {
            match outcome {
                Ok(()) => accepted += 1,
                Err(()) => refused += 1,
            }
        }
        kept.push(request);
    }
    Ok(format!("accepted={accepted} refused={refused}"))
}

fn from_list() -> Result<String, ProviderError> {
    let entries: Vec<(String, Vec<u8>)> = vec![(String::new(), Vec::new()); 400_000];
    match Fields::from_list(&entries) {
        Ok(_) => Ok("accepted".into()),
        Err(e) => Ok(format!("refused: {e:?}")),
    }
}

fn random() -> Result<String, ProviderError> {
    let bytes = wcp_guest_sdk::bindings::wasi::random::random::get_random_bytes(48 << 20);
    Ok(format!("got {} random bytes", bytes.len()))
}

impl Provider for HostState {
    fn get_credentials(request: Request) -> Result<Credentials, ProviderError> {
        let outcome = match config::require("attack")?.as_str() {
            "fields" => fields()?,
            "bodies" => bodies()?,
            "parallel" => parallel()?,
            "userinfo" => userinfo()?,
            "random" => random()?,
            "idle" => "idle".to_string(),
            "env-echo" => {
                let var = |name: &str| std::env::var(name).unwrap_or_default();
                return Err(ProviderError::Upstream(format!(
                    "secret={} region={}",
                    var("AWS_SECRET_ACCESS_KEY"),
                    var("AWS_REGION")
                )));
            }
            "long-strings" => long_strings()?,
            "from-list" => from_list()?,
            other => return Err(ProviderError::Config(format!("unknown attack {other}"))),
        };
        Ok(Credentials::registry(
            image::registry_of(&request.image),
            "host-state",
            outcome,
        ))
    }
}

wcp_guest_sdk::export_provider!(HostState);
wcp_guest_sdk::declare_capabilities!("capabilities.json");

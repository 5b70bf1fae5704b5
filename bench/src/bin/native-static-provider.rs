//! The physical limit: a native exec credential provider doing the least a
//! correct one can (decode the request, echo its apiVersion, answer a fixed
//! credential for the image's registry). Every host figure is compared with
//! this binary's, measured in the same run.

use std::io::{Read, Write};

fn main() {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .expect("read stdin");
    let request: serde_json::Value = serde_json::from_slice(&input).expect("request JSON");
    let api_version = request["apiVersion"].as_str().expect("apiVersion");
    let image = request["image"].as_str().expect("image");
    let registry = image.split('/').next().unwrap_or(image);
    let response = serde_json::json!({
        "kind": "CredentialProviderResponse",
        "apiVersion": api_version,
        "cacheKeyType": "Registry",
        "cacheDuration": "5m0s",
        "auth": { registry: { "username": "robot", "password": "native-password" } },
    });
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &response).expect("write");
    out.write_all(b"\n").expect("write");
}

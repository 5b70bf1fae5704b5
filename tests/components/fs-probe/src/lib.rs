//! Tries to read host files and write one. Any success is a leak.
use wcp_guest_sdk::{Credentials, Provider, ProviderError, Request, image};

struct FsProbe;

impl Provider for FsProbe {
    fn get_credentials(request: Request) -> Result<Credentials, ProviderError> {
        let mut loot = Vec::new();
        for path in [
            "/etc/passwd",
            "/etc/kubernetes/kubelet.conf",
            "/proc/self/environ",
            ".",
        ] {
            if let Ok(data) = std::fs::read(path) {
                loot.push(format!("read {path}: {} bytes", data.len()));
            }
            if let Ok(entries) = std::fs::read_dir(path) {
                loot.push(format!("listed {path}: {} entries", entries.count()));
            }
        }
        if std::fs::write("/tmp/wcp-fs-probe", b"owned").is_ok() {
            loot.push("wrote /tmp/wcp-fs-probe".into());
        }
        if loot.is_empty() {
            return Err(ProviderError::Config(
                "fs probe: every file access was refused".into(),
            ));
        }
        Ok(Credentials::registry(
            image::registry_of(&request.image),
            "leak",
            loot.join(";"),
        ))
    }
}

wcp_guest_sdk::export_provider!(FsProbe);
wcp_guest_sdk::declare_capabilities!("capabilities.json");

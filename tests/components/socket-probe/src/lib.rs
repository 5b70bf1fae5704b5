//! Tries to reach the `host:port` in config `target` with a raw TCP socket
//! and a name lookup, around wasi:http. Any success is a leak.
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use wcp_guest_sdk::{Credentials, Provider, ProviderError, Request, config, image};

struct SocketProbe;

impl Provider for SocketProbe {
    fn get_credentials(request: Request) -> Result<Credentials, ProviderError> {
        let target = config::require("target")?;
        let mut loot = Vec::new();
        if let Ok(mut stream) = TcpStream::connect(&target) {
            let _ = stream.write_all(b"GET / HTTP/1.0\r\n\r\n");
            loot.push(format!("connected to {target}"));
        }
        if let Ok(addrs) = "localhost:80".to_socket_addrs() {
            loot.push(format!("resolved localhost: {}", addrs.count()));
        }
        if loot.is_empty() {
            return Err(ProviderError::Config(
                "socket probe: sockets and name lookup were refused".into(),
            ));
        }
        Ok(Credentials::registry(
            image::registry_of(&request.image),
            "leak",
            loot.join(";"),
        ))
    }
}

wcp_guest_sdk::export_provider!(SocketProbe);
wcp_guest_sdk::declare_capabilities!("capabilities.json");

//! ECDSA P-256 signature checks in cosign's formats, with RustCrypto's
//! `p256`: a PEM `PUBLIC KEY` (cosign `generate-key-pair`, `openssl pkey
//! -pubout`) and a base64 DER signature over SHA-256 of the message
//! (`cosign sign-blob --key`, `openssl dgst -sha256 -sign | base64`).
//!
//! Only builds that compile plugins carry it: verification happens before a
//! module becomes an artifact, never on the exec path.

use anyhow::{Context, Result, ensure};
use base64::Engine as _;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use std::path::Path;
use wcp_core::provenance::{key_fingerprint, pem_public_key_der};

/// Largest key or signature file the host reads.
const MAX_FILE_BYTES: u64 = 16 * 1024;

/// An operator-configured public key.
pub struct PublicKey {
    key: VerifyingKey,
    /// `sha256:<hex>` of its DER SubjectPublicKeyInfo.
    pub fingerprint: String,
}

impl PublicKey {
    /// Reads the PEM key at `path`; only ECDSA P-256 keys are accepted.
    pub fn read(path: &Path) -> Result<Self> {
        let pem = read_small(path)
            .with_context(|| format!("cannot read public key {}", path.display()))?;
        Self::from_pem(&pem).with_context(|| format!("public key {}", path.display()))
    }

    pub fn from_pem(pem: &str) -> Result<Self> {
        let der = pem_public_key_der(pem)?;
        let key = VerifyingKey::from_public_key_der(&der)
            .map_err(|e| anyhow::anyhow!("not an ECDSA P-256 public key ({e})"))?;
        Ok(Self {
            key,
            fingerprint: key_fingerprint(&der),
        })
    }

    /// Checks `signature_base64` (base64 of a DER ECDSA signature; ASCII
    /// whitespace around it is ignored) over `message`.
    pub fn verify(&self, message: &[u8], signature_base64: &str) -> Result<()> {
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature_base64.trim())
            .context("the signature is not base64")?;
        let signature =
            Signature::from_der(&der).context("the signature is not a DER ECDSA signature")?;
        self.key
            .verify(message, &signature)
            .map_err(|_| anyhow::anyhow!("the signature does not match"))
    }
}

/// Reads a small text file (a key or a signature), bounded.
pub fn read_small(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    ensure!(
        text.len() as u64 <= MAX_FILE_BYTES,
        "more than {MAX_FILE_BYTES} bytes"
    );
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with `openssl ecparam -name prime256v1 -genkey` and signed with
    // `printf hello | openssl dgst -sha256 -sign key.pem | base64 -w0`.
    const PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEVbcvVRPEzdDl5i7AShopUV5R59qW
SSBtbGpZQgxu8qeRM69+W7WAb79E/IfbWBnUB0/LiwAoNLCDvaspYUwJ0w==
-----END PUBLIC KEY-----
";
    const SIG: &str = "MEQCIHtWFiK7vGnbWFJfqNeM5qsmrLGimunL1jyFtspAxEFkAiBIopByEJ1c+wp65Ug3scVLA2JPu1amwMAbCJjcl/8Wgg==";

    #[test]
    fn openssl_signatures_verify_and_others_do_not() {
        let key = PublicKey::from_pem(PUB).unwrap();
        assert!(key.fingerprint.starts_with("sha256:"));
        key.verify(b"hello", SIG).unwrap();
        key.verify(b"hello", &format!("{SIG}\n")).unwrap();
        assert!(key.verify(b"hellp", SIG).is_err());
        assert!(key.verify(b"hello", "not base64!").is_err());
        assert!(key.verify(b"hello", "AAAA").is_err());
    }

    #[test]
    fn non_p256_keys_are_refused() {
        // An Ed25519 key (`openssl genpkey -algorithm ed25519`).
        let ed = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAxN0e1kpnihIm2uhACPbDYA5rdOkQcNkexlxugCa32WU=\n-----END PUBLIC KEY-----\n";
        let err = PublicKey::from_pem(ed).err().unwrap();
        assert!(format!("{err:#}").contains("not an ECDSA P-256 public key"));
    }
}

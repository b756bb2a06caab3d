//! TLS material and configurations: the public listener (server side) and https upstreams
//! (client side). rustls only speaks TLS 1.2/1.3 with AEAD suites, as ANSSI advises; we pin
//! the ring provider and restrict 1.2 suites to ECDHE.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificates from {path}: {reason}")]
    Certs { path: String, reason: String },
    #[error("cannot read a private key from {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("TLS configuration refused: {0}")]
    Config(#[from] rustls::Error),
}

/// The ring provider limited to AEAD suites with forward secrecy.
pub fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.retain(|s| {
        use rustls::CipherSuite as C;
        matches!(
            s.suite(),
            C::TLS13_AES_256_GCM_SHA384
                | C::TLS13_AES_128_GCM_SHA256
                | C::TLS13_CHACHA20_POLY1305_SHA256
                | C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
                | C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                | C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
                | C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
                | C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        )
    });
    Arc::new(p)
}

pub fn load_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::Certs { path: path.display().to_string(), reason };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate found".to_owned()));
    }
    Ok(certs)
}

pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| TlsError::Key { path: path.display().to_string(), reason: e.to_string() })
}

static TLS12_AND_13: [&SupportedProtocolVersion; 2] = [&rustls::version::TLS13, &rustls::version::TLS12];
static TLS13_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

pub fn parse_min_version(v: &str) -> Option<&'static [&'static SupportedProtocolVersion]> {
    match v {
        "1.2" => Some(&TLS12_AND_13),
        "1.3" => Some(&TLS13_ONLY),
        _ => None,
    }
}

/// The public listener's provider: the AEAD suites of [`provider`], and key exchange pinned
/// to X25519 then P-256 (ANSSI's and every browser's choice; P-384 and FFDHE are not offered).
pub fn server_provider() -> Arc<CryptoProvider> {
    let mut p = (*provider()).clone();
    p.kx_groups = vec![rustls::crypto::ring::kx_group::X25519, rustls::crypto::ring::kx_group::SECP256R1];
    Arc::new(p)
}

/// Server configuration for the public listener, offering HTTP/2 then HTTP/1.1 by ALPN.
/// No session resumption at all: no TLS 1.2 tickets, no TLS 1.3 tickets, no session cache,
/// so a stolen ticket key can never open past traffic (forward secrecy, CNIL R42).
pub fn server_config(cert: &Path, key: &Path, min_version: &str) -> Result<ServerConfig, TlsError> {
    let versions = parse_min_version(min_version)
        .ok_or_else(|| TlsError::Config(rustls::Error::General(format!("unsupported min_version {min_version}"))))?;
    let mut cfg = ServerConfig::builder_with_provider(server_provider())
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_single_cert(load_cert_chain(cert)?, load_private_key(key)?)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(cfg)
}

/// Client configuration toward https upstreams: system roots plus an optional extra CA file.
pub fn client_config(extra_ca: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates are skipped: an upstream signed by them then fails to
    // verify, which is the safe outcome.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_ca {
        for c in load_cert_chain(path)? {
            roots.add(c).map_err(TlsError::Config)?;
        }
    }
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(cfg)
}

/// A client configuration that trusts nothing, for routes whose upstream is plain http (the
/// connector type is shared; this configuration is never used for a handshake).
pub fn client_config_without_roots() -> Result<ClientConfig, TlsError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth())
}

//! Native TLS: the rustls server configuration from PEM files (ring provider,
//! TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1 by ALPN). Serving it is
//! `startup.rs`'s job (axum-server's rustls acceptor).

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ConfigError;

/// Most certificates a chain file may hold.
pub const MAX_CHAIN_CERTS: usize = 16;

fn bad(key: &str, message: String) -> ConfigError {
    ConfigError {
        key: key.into(),
        message,
    }
}

/// Reads the certificate chain (`tls_cert`) and private key (`tls_key`) and
/// builds the server configuration; errors name the key at fault.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("tls_cert", format!("cannot read {}: {e}", cert.display())))?
        .take(MAX_CHAIN_CERTS + 1)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            bad(
                "tls_cert",
                format!("{}: not PEM certificates: {e}", cert.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(bad(
            "tls_cert",
            format!("{}: no CERTIFICATE block", cert.display()),
        ));
    }
    if certs.len() > MAX_CHAIN_CERTS {
        return Err(bad(
            "tls_cert",
            format!(
                "{}: more than {MAX_CHAIN_CERTS} certificates",
                cert.display()
            ),
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        bad(
            "tls_key",
            format!("{}: no readable PEM private key: {e}", key.display()),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("tls_cert", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, private)
        .map_err(|e| {
            bad(
                "tls_key",
                format!("does not match the certificate or is unsupported: {e}"),
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

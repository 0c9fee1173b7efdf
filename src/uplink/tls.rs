//! TLS for the uplink: rustls with the ring provider, the broker verified against the
//! configured CA, and an optional client certificate for mutual TLS.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Uplink;

/// Builds the client TLS config, or says which file is wrong and how.
pub fn client_config(cfg: &Uplink) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let mut roots = RootCertStore::empty();
    let ca =
        cfg.ca.as_deref().ok_or("uplink.ca is not set; mqtts:// needs the CA that signed the broker's certificate")?;
    for cert in certs(ca, "uplink.ca")? {
        roots.add(cert).map_err(|e| format!("uplink.ca {}: unusable CA certificate: {e}", ca.display()))?;
    }
    let builder = builder.with_root_certificates(roots);
    let config = match (&cfg.cert, &cfg.key) {
        (Some(cert), Some(key)) => {
            let chain = certs(cert, "uplink.cert")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                format!("uplink.key {}: no usable private key ({e}); give the PEM key of uplink.cert", key.display())
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                format!("uplink.cert/uplink.key: the certificate and key do not go together or are unusable: {e}")
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{key} {}: cannot read ({e})", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{key} {}: not a PEM certificate file ({e})", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{key} {}: no certificate in the file; give a PEM file with BEGIN CERTIFICATE",
            path.display()
        ));
    }
    Ok(certs)
}

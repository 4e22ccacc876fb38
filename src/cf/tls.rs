//! The rustls configuration: the system trust store plus `ca_cert`, or no verification with `skip_cert_check`.
//!
//! Crypto is *ring* (no OpenSSL, no aws-lc). The system store is what rustls-native-certs finds (on Linux the
//! OpenSSL locations, `/etc/ssl/certs`, where Concourse mounts the worker's CA bundle; `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` override). The config goes to reqwest with `ClientBuilder::tls_backend_preconfigured`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::cf::error::{Error, Result};
use crate::log;

/// Builds the client TLS config. With `skip_cert_check` prints exactly one warning.
pub(crate) fn client_config(ca_cert: Option<&str>, skip_cert_check: bool) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS setup failed: {e}")))?;

    if skip_cert_check {
        log::warn("skip_cert_check is on: TLS certificates of Cloud Foundry are not verified");
        let verifier = NoVerification { algorithms: provider.signature_verification_algorithms };
        return Ok(builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth());
    }

    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (_added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(pem) = ca_cert.filter(|p| !p.trim().is_empty()) {
        for cert in parse_pem_certs(pem)? {
            roots.add(cert).map_err(|e| Error::Config(format!("ca_cert: certificate not usable as a CA: {e}")))?;
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// The certificates in a PEM bundle; an error if there are none or one is malformed.
pub(crate) fn parse_pem_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("ca_cert is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Config("ca_cert holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
    }
    Ok(certs)
}

/// Accepts any server certificate, but still checks handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct NoVerification {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// If a transport error was caused by certificate verification, a message that names the problem and the fix.
pub(crate) fn certificate_problem(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(message) = rustls_certificate_message(e) {
            return Some(message);
        }
        // io::Error wraps its cause without exposing it as `source()`; look inside (it may be nested).
        let mut inner = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
        while let Some(wrapped) = inner {
            if let Some(message) = rustls_certificate_message(wrapped) {
                return Some(message);
            }
            inner = wrapped.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
        }
        current = e.source();
    }
    None
}

fn rustls_certificate_message(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    match e.downcast_ref::<rustls::Error>()? {
        rustls::Error::InvalidCertificate(cert) => Some(format!(
            "TLS certificate verification failed: invalid peer certificate ({cert:?}); if Cloud Foundry uses a \
             private CA, set ca_cert to its PEM certificate (or skip_cert_check: true to turn verification off)"
        )),
        other => Some(format!("TLS handshake failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pem_is_a_clear_config_error() {
        let err = parse_pem_certs("not a certificate").unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn default_config_builds_from_the_system_store() {
        client_config(None, false).unwrap();
    }
}

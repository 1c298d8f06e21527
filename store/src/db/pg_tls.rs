//! TLS for PostgreSQL connections under libpq's names: `sslmode` (`disable`, `prefer`,
//! `require`, `verify-ca`, `verify-full`) and `sslrootcert=PATH` in the URL's query.
//!
//! tokio-postgres parses neither `verify-*` nor `sslrootcert`, so [`PgUrl::parse`] takes both
//! out of the URL and leaves the rest to tokio-postgres, whose own `sslmode` is then set to
//! what the connection needs on the wire (no TLS, TLS if offered, TLS or fail). What is
//! checked of the server's certificate is this module's rustls verifier (ring provider,
//! through tokio-postgres-rustls, which also supplies SCRAM channel binding):
//!
//! | `sslmode` | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default, as libpq) | when the server offers TLS | no |
//! | `require` | always | no; but with `sslrootcert`, as `verify-ca` (as libpq) |
//! | `verify-ca` | always | chain to `sslrootcert`, or to the Mozilla roots without it |
//! | `verify-full` | always | the chain, and the host name (or IP) in the URL |
//!
//! Everything here runs when a connection opens, never per query.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};

/// libpq's `sslmode`, less `allow` (plain first, TLS on refusal), which nobody should want.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(Error::Config(format!(
                    "sslmode={other} is not supported; use disable, prefer, require, verify-ca \
                     or verify-full"
                )))
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres is told: whether to ask for TLS and whether to insist.
    fn wire(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

/// A PostgreSQL URL with its TLS settings taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PgUrl {
    /// The URL for tokio-postgres, without `sslmode` and `sslrootcert`.
    pub(crate) rest: String,
    pub(crate) mode: SslMode,
    pub(crate) root_cert: Option<PathBuf>,
}

impl PgUrl {
    /// Splits `sslmode` and `sslrootcert` off the query of `url`; the other parameters keep
    /// their order and spelling.
    pub(crate) fn parse(url: &str) -> Result<Self> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut mode = None;
        let mut root_cert = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match decode(key)?.as_str() {
                "sslmode" => mode = Some(SslMode::parse(&decode(value)?)?),
                "sslrootcert" => root_cert = Some(PathBuf::from(decode(value)?)),
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mode = match (mode.unwrap_or(SslMode::Prefer), &root_cert) {
            // libpq: "if a root CA file exists, the behavior of sslmode=require will be the
            // same as that of verify-ca" — a root named on purpose is meant to be checked.
            (SslMode::Require, Some(_)) => SslMode::VerifyCa,
            (mode, _) => mode,
        };
        Ok(Self {
            rest,
            mode,
            root_cert,
        })
    }

    /// Applies the wire-level mode to tokio-postgres' configuration.
    pub(crate) fn configure(&self, config: &mut tokio_postgres::Config) {
        config.ssl_mode(self.mode.wire());
    }

    /// `sslmode=…[, sslrootcert=…]`, for error messages.
    pub(crate) fn describe(&self) -> String {
        match &self.root_cert {
            Some(path) => format!(
                "sslmode={}, sslrootcert={}",
                self.mode.name(),
                path.display()
            ),
            None => format!("sslmode={}", self.mode.name()),
        }
    }

    /// The connector for the pool and LISTEN connections: rustls with the verifier the mode
    /// calls for. Reads `sslrootcert` now, so a missing file fails the start.
    pub(crate) fn connector(&self) -> Result<MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("PostgreSQL TLS: {e}")))?;
        let builder = match self.mode {
            SslMode::VerifyFull => builder.with_root_certificates(self.roots()?),
            mode => {
                let roots = (mode == SslMode::VerifyCa)
                    .then(|| self.roots())
                    .transpose()?
                    .map(Arc::new);
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(Verifier {
                        roots,
                        algorithms: provider.signature_verification_algorithms,
                    }))
            }
        };
        let mut config = builder.with_no_client_auth();
        // As libpq 17 does: lets `sslnegotiation=direct` work, ignored by older servers.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(MakeRustlsConnect::new(config))
    }

    /// The CAs to check against: `sslrootcert`, or the Mozilla root store without it.
    fn roots(&self) -> Result<RootCertStore> {
        let Some(path) = &self.root_cert else {
            return Ok(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            });
        };
        let bad =
            |detail: String| Error::Config(format!("sslrootcert {}: {detail}", path.display()));
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(Iterator::collect::<std::result::Result<Vec<_>, _>>)
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("holds no PEM certificate".into()));
        }
        let mut roots = RootCertStore::empty();
        for cert in certs {
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
        Ok(roots)
    }
}

/// Percent-decodes a URL query component, as tokio-postgres does.
fn decode(s: &str) -> Result<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|e| Error::Config(format!("bad PostgreSQL URL parameter {s:?}: {e}")))
}

/// The server-certificate check of `verify-ca` (chain to `roots`, any name) and of
/// `prefer`/`require` (`roots: None`: no check — encryption against passive listeners only;
/// anyone who can intercept the connection can present a certificate of their own). The
/// handshake's signatures are always verified, so the session is bound to the certificate
/// the server sent.
#[derive(Debug)]
struct Verifier {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> PgUrl {
        PgUrl::parse(url).unwrap()
    }

    #[test]
    fn defaults_to_prefer_and_keeps_the_url() {
        let u = parse("postgres://u:p@db:5432/app?application_name=rg");
        assert_eq!(u.mode, SslMode::Prefer);
        assert_eq!(u.rest, "postgres://u:p@db:5432/app?application_name=rg");
        assert_eq!(parse("postgres://db/app").rest, "postgres://db/app");
    }

    #[test]
    fn takes_out_the_tls_parameters() {
        let u = parse(
            "postgresql://db/app?connect_timeout=5&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fca%20dir%2Fca.pem&application_name=rg",
        );
        assert_eq!(u.mode, SslMode::VerifyFull);
        assert_eq!(u.root_cert, Some(PathBuf::from("/etc/ca dir/ca.pem")));
        assert_eq!(
            u.rest,
            "postgresql://db/app?connect_timeout=5&application_name=rg"
        );
        assert_eq!(
            u.describe(),
            "sslmode=verify-full, sslrootcert=/etc/ca dir/ca.pem"
        );
        assert_eq!(
            parse("postgres://db/x?sslmode=disable").rest,
            "postgres://db/x"
        );
    }

    #[test]
    fn require_with_a_root_checks_the_chain() {
        assert_eq!(
            parse("postgres://db/x?sslmode=require").mode,
            SslMode::Require
        );
        assert_eq!(
            parse("postgres://db/x?sslmode=require&sslrootcert=/ca.pem").mode,
            SslMode::VerifyCa
        );
    }

    #[test]
    fn wire_modes() {
        use tokio_postgres::config::SslMode as Wire;
        for (mode, wire) in [
            (SslMode::Disable, Wire::Disable),
            (SslMode::Prefer, Wire::Prefer),
            (SslMode::Require, Wire::Require),
            (SslMode::VerifyCa, Wire::Require),
            (SslMode::VerifyFull, Wire::Require),
        ] {
            assert_eq!(mode.wire(), wire, "{mode:?}");
        }
    }

    #[test]
    fn refuses_unknown_modes_and_unreadable_roots() {
        let err = PgUrl::parse("postgres://db/x?sslmode=allow").unwrap_err();
        assert!(err.to_string().contains("verify-full"), "{err}");
        let err = parse("postgres://db/x?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem")
            .connector()
            .err()
            .expect("a missing sslrootcert fails");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        // Without sslrootcert the public roots are used.
        assert!(parse("postgres://db/x?sslmode=verify-full")
            .connector()
            .is_ok());
    }
}

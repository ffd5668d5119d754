//! TLS for KDS: on by default.
//!
//! When no certificate is configured, the global control plane generates a CA and a server
//! certificate signed by it into its work dir ([`ensure_server_certificate`]) and reuses them on
//! the next start. The zone verifies the global against `multizone.zone.kds.rootCaFile`, or
//! skips verification only when `multizone.zone.kds.tlsSkipVerify` is set ([`client_config`]).
//!
//! All rustls configs use the aws-lc-rs provider explicitly, so nothing depends on a
//! process-wide default provider being installed.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// File name of the generated CA certificate inside the work dir.
pub const CA_CERT_FILE: &str = "kds-ca.crt";
/// File name of the generated server certificate inside the work dir.
pub const SERVER_CERT_FILE: &str = "kds-server.crt";
/// File name of the generated server private key inside the work dir.
pub const SERVER_KEY_FILE: &str = "kds-server.key";

const CA_COMMON_NAME: &str = "kuma-rs KDS CA";
const SERVER_COMMON_NAME: &str = "kuma-rs KDS server";
const VALIDITY: time::Duration = time::Duration::days(3650);

/// What went wrong while generating, loading or using TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot create directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid {}: {problem}", path.display())]
    Parse { path: PathBuf, problem: String },
    #[error("invalid certificate PEM: {0}")]
    CertPem(String),
    #[error("invalid private key PEM: {0}")]
    KeyPem(String),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("no root CA configured: set multizone.zone.kds.rootCaFile or tlsSkipVerify")]
    NoRootCa,
}

/// The KDS server certificate, its key and the CA that signed it: where they live and what
/// they contain.
#[derive(Debug, Clone)]
pub struct GeneratedTls {
    pub ca_cert_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub ca_cert_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// `true` when the files were created by this call, `false` when existing ones were reused.
    pub generated: bool,
}

/// Makes sure `<work_dir>` holds a CA (`kds-ca.crt`), a server certificate (`kds-server.crt`)
/// and its key (`kds-server.key`).
///
/// When all three files exist they are parsed and reused (a file that exists but does not parse
/// is an error naming it). Otherwise a fresh CA (ECDSA P-256, CN "kuma-rs KDS CA", 10 years)
/// and a server certificate signed by it are generated, with SANs `hostnames` + `localhost` +
/// `127.0.0.1` + `::1`, and written as PEM (the key with mode 0600).
pub fn ensure_server_certificate(
    work_dir: &Path,
    hostnames: &[String],
) -> Result<GeneratedTls, TlsError> {
    let ca_cert_path = work_dir.join(CA_CERT_FILE);
    let cert_path = work_dir.join(SERVER_CERT_FILE);
    let key_path = work_dir.join(SERVER_KEY_FILE);

    if ca_cert_path.exists() && cert_path.exists() && key_path.exists() {
        let ca_cert_pem = read_pem_certs(&ca_cert_path)?;
        let cert_pem = read_pem_certs(&cert_path)?;
        let key_pem = read_to_string(&key_path)?;
        KeyPair::from_pem(&key_pem).map_err(|e| TlsError::Parse {
            path: key_path.clone(),
            problem: format!("not a usable private key: {e}"),
        })?;
        return Ok(GeneratedTls {
            ca_cert_path,
            cert_path,
            key_path,
            ca_cert_pem,
            cert_pem,
            key_pem,
            generated: false,
        });
    }

    let (ca_cert_pem, cert_pem, key_pem) = generate(hostnames)?;
    fs::create_dir_all(work_dir).map_err(|source| TlsError::CreateDir {
        path: work_dir.to_path_buf(),
        source,
    })?;
    write_file(&ca_cert_path, &ca_cert_pem, false)?;
    write_file(&key_path, &key_pem, true)?;
    write_file(&cert_path, &cert_pem, false)?;
    Ok(GeneratedTls {
        ca_cert_path,
        cert_path,
        key_path,
        ca_cert_pem,
        cert_pem,
        key_pem,
        generated: true,
    })
}

/// Generates a CA and a server certificate signed by it; returns (CA PEM, cert PEM, key PEM).
fn generate(hostnames: &[String]) -> Result<(String, String, String), TlsError> {
    let now = time::OffsetDateTime::now_utc();
    let not_before = now - time::Duration::hours(1);
    let not_after = now + VALIDITY;

    let mut ca_params = CertificateParams::default();
    let mut ca_dn = DistinguishedName::new();
    ca_dn.push(DnType::CommonName, CA_COMMON_NAME);
    ca_params.distinguished_name = ca_dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, SERVER_COMMON_NAME);
    params.distinguished_name = dn;
    let mut sans = Vec::new();
    for name in hostnames.iter().map(String::as_str).chain(["localhost"]) {
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.try_into()?),
        };
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        let san = SanType::IpAddress(ip);
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&key, &issuer)?;

    Ok((ca_cert.pem(), cert.pem(), key.serialize_pem()))
}

fn read_to_string(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a PEM file that must contain at least one certificate.
fn read_pem_certs(path: &Path) -> Result<String, TlsError> {
    let pem = read_to_string(path)?;
    parse_certs(&pem).map_err(|problem| TlsError::Parse {
        path: path.to_path_buf(),
        problem,
    })?;
    Ok(pem)
}

fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate found".to_string());
    }
    Ok(certs)
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(err)?;
    #[cfg(unix)]
    if private {
        // `mode` only applies on creation; tighten a pre-existing file too.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    #[cfg(not(unix))]
    let _ = private;
    file.write_all(contents.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A rustls server config (TLS 1.2 and 1.3, ALPN `h2`) serving `cert_pem` (leaf first, then
/// any intermediates) with `key_pem`.
pub fn server_config(cert_pem: &str, key_pem: &str) -> Result<ServerConfig, TlsError> {
    let certs = parse_certs(cert_pem).map_err(TlsError::CertPem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| TlsError::KeyPem(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A rustls client config (TLS 1.2 and 1.3, ALPN `h2`) for a zone connecting to the global.
///
/// With `root_ca`, the server is verified against the certificates in that file only (the
/// system trust store is not consulted). Without it, `skip_verify` selects
/// [`NoVerification`]; with neither, [`TlsError::NoRootCa`].
pub fn client_config(root_ca: Option<&Path>, skip_verify: bool) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let mut config = match (root_ca, skip_verify) {
        (Some(path), _) => {
            let pem = read_to_string(path)?;
            let certs = parse_certs(&pem).map_err(|problem| TlsError::Parse {
                path: path.to_path_buf(),
                problem,
            })?;
            let mut roots = RootCertStore::empty();
            for cert in certs {
                roots.add(cert).map_err(|e| TlsError::Parse {
                    path: path.to_path_buf(),
                    problem: format!("not a usable CA certificate: {e}"),
                })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        (None, true) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification::new(&provider())))
            .with_no_client_auth(),
        (None, false) => return Err(TlsError::NoRootCa),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// **DANGEROUS**: a server certificate verifier that accepts any certificate for any name.
///
/// It gives encryption without authentication: anyone able to intercept the connection can
/// impersonate the global control plane. It is used only when the operator explicitly sets
/// `multizone.zone.kds.tlsSkipVerify`. Handshake signatures are still checked, so the peer
/// must hold the key of the certificate it presents.
#[derive(Debug)]
pub struct NoVerification {
    algorithms: WebPkiSupportedAlgorithms,
}

impl NoVerification {
    pub fn new(provider: &CryptoProvider) -> Self {
        Self {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn hosts() -> Vec<String> {
        vec!["global.example".to_string(), "10.0.0.7".to_string()]
    }

    /// Serves one TLS connection with `server` that writes "pong"; connects with `client`
    /// to `name` and returns what it read, or the client-side error.
    async fn handshake(
        server: ServerConfig,
        client: ClientConfig,
        name: &str,
    ) -> std::io::Result<Vec<u8>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let server_task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await?;
            let mut tls = acceptor.accept(tcp).await?;
            tls.write_all(b"pong").await?;
            tls.shutdown().await?;
            Ok::<_, std::io::Error>(())
        });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let server_name = ServerName::try_from(name.to_string()).expect("valid server name");
        let result = async {
            let mut tls = connector.connect(server_name, tcp).await?;
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            let mut buf = Vec::new();
            tls.read_to_end(&mut buf).await?;
            Ok(buf)
        }
        .await;
        if result.is_ok() {
            server_task
                .await
                .expect("server task")
                .expect("server side");
        } else {
            server_task.abort();
        }
        result
    }

    #[test]
    fn generates_then_reuses_same_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = ensure_server_certificate(dir.path(), &hosts()).expect("generate");
        assert!(first.generated);
        assert_eq!(first.ca_cert_path, dir.path().join(CA_CERT_FILE));
        let ca = fs::read(&first.ca_cert_path).expect("ca");
        let cert = fs::read(&first.cert_path).expect("cert");
        let key = fs::read(&first.key_path).expect("key");
        assert_eq!(ca, first.ca_cert_pem.as_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&first.key_path)
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let second = ensure_server_certificate(dir.path(), &hosts()).expect("reuse");
        assert!(!second.generated);
        assert_eq!(fs::read(&second.ca_cert_path).expect("ca"), ca);
        assert_eq!(fs::read(&second.cert_path).expect("cert"), cert);
        assert_eq!(fs::read(&second.key_path).expect("key"), key);
        assert_eq!(second.cert_pem, first.cert_pem);
        assert_eq!(second.key_pem, first.key_pem);
    }

    #[tokio::test]
    async fn handshake_verifies_against_generated_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = ensure_server_certificate(dir.path(), &hosts()).expect("generate");
        for name in ["localhost", "127.0.0.1", "global.example", "10.0.0.7"] {
            let server = server_config(&tls.cert_pem, &tls.key_pem).expect("server config");
            let client = client_config(Some(&tls.ca_cert_path), false).expect("client config");
            let got = handshake(server, client, name).await.expect("handshake");
            assert_eq!(got, b"pong", "{name}");
        }
    }

    #[tokio::test]
    async fn handshake_fails_with_other_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = ensure_server_certificate(dir.path(), &hosts()).expect("generate");
        let other_dir = tempfile::tempdir().expect("tempdir");
        let other = ensure_server_certificate(other_dir.path(), &hosts()).expect("generate");

        let server = server_config(&tls.cert_pem, &tls.key_pem).expect("server config");
        let client = client_config(Some(&other.ca_cert_path), false).expect("client config");
        let err = handshake(server, client, "localhost")
            .await
            .expect_err("must not trust a foreign CA");
        let rustls_err = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .unwrap_or_else(|| panic!("expected a rustls error, got {err:?}"));
        assert!(
            matches!(rustls_err, rustls::Error::InvalidCertificate(_)),
            "{rustls_err:?}"
        );
    }

    #[tokio::test]
    async fn skip_verify_accepts_any_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = ensure_server_certificate(dir.path(), &hosts()).expect("generate");
        let server = server_config(&tls.cert_pem, &tls.key_pem).expect("server config");
        let client = client_config(None, true).expect("client config");
        let got = handshake(server, client, "not-in-the-cert.example")
            .await
            .expect("handshake");
        assert_eq!(got, b"pong");
    }

    #[test]
    fn no_root_ca_and_no_skip_is_an_error() {
        let err = client_config(None, false).expect_err("must fail");
        assert_eq!(
            err.to_string(),
            "no root CA configured: set multizone.zone.kds.rootCaFile or tlsSkipVerify"
        );
    }

    #[test]
    fn corrupt_key_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = ensure_server_certificate(dir.path(), &hosts()).expect("generate");
        fs::write(&tls.key_path, "garbage").expect("corrupt");
        let err = ensure_server_certificate(dir.path(), &hosts()).expect_err("must fail");
        assert!(matches!(err, TlsError::Parse { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&tls.key_path.display().to_string()), "{msg}");
    }

    #[test]
    fn corrupt_ca_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = ensure_server_certificate(dir.path(), &hosts()).expect("generate");
        fs::write(&tls.ca_cert_path, "garbage").expect("corrupt");
        let err = ensure_server_certificate(dir.path(), &hosts()).expect_err("must fail");
        assert!(err.to_string().contains(CA_CERT_FILE), "{err}");
    }
}

//! `kumactl generate dataplane-token|zone-token|user-token` (issued by the control plane with
//! `POST /tokens/...`, or signed locally with `--signing-key-path --kid`),
//! `generate signing-key` and `generate tls-certificate` (local).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;
use serde_json::{Value, json};

use super::print;
use crate::cli::{
    DataplaneTokenArgs, GenerateCommand, OfflineSigning, TlsCertificateArgs, UserTokenArgs,
    ZoneTokenArgs,
};
use crate::go::format_duration;
use crate::root::Root;

/// Zone token scopes: Kuma's proxy scopes, and `cp` for a zone control plane dialling the
/// global (Kong Mesh's zone authentication; the global's `multizone.global.kds.auth.type`).
const SCOPES: &[&str] = &["ingress", "egress", "cp"];

pub async fn run(root: &Root, command: &GenerateCommand) -> Result<()> {
    match command {
        GenerateCommand::DataplaneToken(args) => dataplane_token(root, args).await,
        GenerateCommand::ZoneToken(args) => zone_token(root, args).await,
        GenerateCommand::UserToken(args) => user_token(root, args).await,
        GenerateCommand::SigningKey { format } => signing_key(format),
        GenerateCommand::TlsCertificate(args) => tls_certificate(args),
    }
}

/// Offline signing needs both flags; the control plane path allows neither alone.
fn offline(signing: &OfflineSigning) -> Result<bool> {
    match (signing.signing_key_path.is_empty(), signing.kid.is_empty()) {
        (true, true) => Ok(false),
        (false, false) => Ok(true),
        (false, true) => bail!("--kid is required when --signing-key-path is used"),
        (true, false) => bail!("--kid cannot be used when --signing-key-path is used"),
    }
}

async fn dataplane_token(root: &Root, args: &DataplaneTokenArgs) -> Result<()> {
    let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in args.tag.iter().flatten() {
        tags.insert(k.clone(), v.split(',').map(str::to_string).collect());
    }
    if offline(&args.signing)? {
        for values in tags.values_mut() {
            values.sort();
            values.dedup();
        }
        let claims = json!({
            "Name": args.name, "Mesh": root.mesh, "Tags": tags,
            "Type": args.proxy_type, "Workload": args.workload,
        });
        print(&sign_offline(&args.signing, claims, args.valid_for)?);
        return Ok(());
    }
    if args.valid_for.is_zero() {
        bail!("failed to generate a dataplane token: You must set a token validFor value");
    }
    let body = json!({
        "name": args.name,
        "mesh": root.mesh,
        "tags": tags,
        "type": args.proxy_type,
        "workload": args.workload,
        "validFor": format_duration(args.valid_for),
    });
    let token = issue(root, "dataplane", &body)
        .await
        .context("failed to generate a dataplane token")?;
    print(&token);
    Ok(())
}

async fn zone_token(root: &Root, args: &ZoneTokenArgs) -> Result<()> {
    let unsupported: Vec<&str> = args
        .scope
        .iter()
        .map(String::as_str)
        .filter(|s| !SCOPES.contains(s))
        .collect();
    if !unsupported.is_empty() {
        bail!(
            "invalid --scope values: [{}] (supported scopes: [{}])",
            unsupported.join(" "),
            SCOPES.join(" ")
        );
    }
    if offline(&args.signing)? {
        let claims = json!({"Zone": args.zone, "Scope": args.scope});
        print(&sign_offline(&args.signing, claims, args.valid_for)?);
        return Ok(());
    }
    let body = json!({
        "zone": args.zone,
        "scope": args.scope,
        "validFor": format_duration(args.valid_for),
    });
    let token = issue(root, "zone", &body)
        .await
        .context("failed to generate a zone token")?;
    print(&token);
    Ok(())
}

async fn user_token(root: &Root, args: &UserTokenArgs) -> Result<()> {
    let groups = if args.group.is_empty() {
        Value::Null
    } else {
        json!(args.group)
    };
    if offline(&args.signing)? {
        let claims = json!({"Name": args.name, "Groups": groups});
        print(&sign_offline(&args.signing, claims, args.valid_for)?);
        return Ok(());
    }
    let body = json!({
        "name": args.name,
        "groups": groups,
        "validFor": format_duration(args.valid_for),
    });
    let token = issue(root, "user", &body)
        .await
        .context("failed to generate a user token")?;
    print(&token);
    Ok(())
}

/// `POST /tokens/{entity}`: the body of a 200 is the token.
async fn issue(root: &Root, entity: &str, body: &Value) -> Result<String> {
    let client = root.client()?;
    root.check_compatibility(&client).await;
    let response = client
        .send(
            reqwest::Method::POST,
            &format!("/tokens/{entity}"),
            Some(body),
        )
        .await?;
    if response.status != 200 {
        return Err(response.into_error().into());
    }
    Ok(response.text())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Signs a token like Kuma's issuer: RS256, `kid` header, `iat`/`nbf` five seconds in the
/// past, `exp` after `valid_for`, a fresh `jti`.
fn sign_offline(
    signing: &OfflineSigning,
    mut claims: Value,
    valid_for: Duration,
) -> Result<String> {
    let pem = std::fs::read(&signing.signing_key_path)
        .with_context(|| format!("could not read {}", signing.signing_key_path))?;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem)
        .map_err(|e| anyhow!("could not read the signing key: {e}"))?;
    let now = unix_now() - 5;
    if let Value::Object(map) = &mut claims {
        map.insert("exp".into(), json!(now + valid_for.as_secs() as i64 + 5));
        map.insert("nbf".into(), json!(now));
        map.insert("iat".into(), json!(now));
        map.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(signing.kid.clone());
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| anyhow!("could not sign a token: {e}"))
}

fn pem(label: &str, der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A new RSA-2048 key as PEM `RSA PRIVATE KEY` (PKCS#1), the form Kuma stores signing keys in.
pub fn rsa_private_key_pem() -> Result<String> {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
        .map_err(|e| anyhow!("could not generate signing key: {e}"))?;
    rsa_pkcs1_pem(&pair)
}

/// The PKCS#1 form of an RSA key pair (jsonwebtoken keeps the PKCS#1 bytes of a PKCS#8 key).
fn rsa_pkcs1_pem(pair: &rcgen::KeyPair) -> Result<String> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes())
        .map_err(|e| anyhow!("could not re-read the generated RSA key: {e}"))?;
    Ok(pem("RSA PRIVATE KEY", key.as_bytes()))
}

fn signing_key(format: &str) -> Result<()> {
    let key = rsa_private_key_pem()?;
    match format {
        "pem" => print(&key),
        "pem-base64" => print(&base64::engine::general_purpose::STANDARD.encode(key)),
        _ => bail!("invalid format"),
    }
    Ok(())
}

/// A self-signed certificate like Kuma's `NewSelfSignedCert`: empty subject, CA, valid ten
/// years from five minutes ago, server or client auth, SANs from the hostnames.
pub fn self_signed(cert_type: &str, key_type: &str, hosts: &[String]) -> Result<(String, String)> {
    let usage = match cert_type {
        "server" => rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        "client" => rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        other => bail!("invalid certificate type {other:?}"),
    };
    if hosts.iter().all(String::is_empty) {
        bail!("at least one hostname must be given");
    }
    let (pair, rsa) = match key_type {
        "" | "rsa" => (rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256), true),
        "ecdsa" => (
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            false,
        ),
        other => bail!("invalid key type {other:?}"),
    };
    let pair = pair.map_err(|e| anyhow!("could not generate certificate: {e}"))?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let not_before = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
    params.not_before = not_before;
    params.not_after = not_before + time::Duration::days(3650);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
        rcgen::KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![usage];
    let mut serial = [0u8; 16];
    serial.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..]);
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    for host in hosts.iter().filter(|h| !h.is_empty()) {
        params
            .subject_alt_names
            .push(match host.parse::<std::net::IpAddr>() {
                Ok(ip) => rcgen::SanType::IpAddress(ip),
                Err(_) => rcgen::SanType::DnsName(
                    host.clone()
                        .try_into()
                        .map_err(|e| anyhow!("invalid hostname {host:?}: {e}"))?,
                ),
            });
    }
    let cert = params
        .self_signed(&pair)
        .map_err(|e| anyhow!("could not generate certificate: {e}"))?;
    let key_pem = if rsa {
        rsa_pkcs1_pem(&pair)?
    } else {
        pair.serialize_pem()
    };
    Ok((cert.pem(), key_pem))
}

fn tls_certificate(args: &TlsCertificateArgs) -> Result<()> {
    let (cert_pem, key_pem) = self_signed(&args.cert_type, &args.key_type, &args.hostname)?;
    if args.key_file == "-" {
        print(&key_pem);
    } else {
        crate::config::write_file_mode(args.key_file.as_ref(), key_pem.as_bytes(), 0o400)
            .context("could not write the key file")?;
    }
    if args.cert_file == "-" {
        print(&cert_pem);
    } else {
        crate::config::write_file_mode(args.cert_file.as_ref(), cert_pem.as_bytes(), 0o600)
            .context("could not write the cert file")?;
    }
    if args.cert_file != "-" && args.key_file != "-" {
        print(&format!(
            "Private key saved in {}\nCertificate saved in {}\n",
            args.key_file, args.cert_file
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_key_is_pkcs1_rsa() {
        let key = rsa_private_key_pem().expect("key");
        assert!(
            key.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"),
            "{key}"
        );
        assert!(key.ends_with("-----END RSA PRIVATE KEY-----\n"));
        jsonwebtoken::EncodingKey::from_rsa_pem(key.as_bytes()).expect("readable");
    }

    #[test]
    fn self_signed_server_certificate() {
        let (cert, key) =
            self_signed("server", "", &["localhost".into(), "127.0.0.1".into()]).expect("cert");
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert!(self_signed("other", "", &["x".into()]).is_err());
        let (_, ec) = self_signed("client", "ecdsa", &["x".into()]).expect("ecdsa");
        assert!(ec.contains("PRIVATE KEY"));
    }
}

//! Rules a config must follow beyond what each value's type checks.

use std::path::PathBuf;

use super::{Config, Mode, PgTlsMode, Problem};

pub(crate) fn validate(c: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut rule = |key: &str, message: String| {
        problems.push(Problem::Rule {
            key: key.to_owned(),
            message,
        });
    };

    for (key, port) in ports(c) {
        if port == 0 {
            rule(key, "must be a port number between 1 and 65535".to_owned());
        }
    }
    let listeners = tcp_listeners(c);
    for (i, (key, port)) in listeners.iter().enumerate() {
        if let Some((other, _)) = listeners[..i].iter().find(|(_, p)| p == port) {
            rule(key, format!("port {port} is also used by {other}"));
        }
    }

    // The zone's name travels to the global as its identity (client-id, token `Zone` claim),
    // so a federated zone needs a valid one whatever the mode. `globalAddress` itself is a
    // `GrpcUrl`: a scheme other than grpc or grpcs is refused when it is read.
    let zone = &c.multizone.zone;
    if zone.name.is_empty() {
        if zone.global_address.is_some() {
            rule(
                "multizone.zone.name",
                "must be set when multizone.zone.globalAddress is set".to_owned(),
            );
        } else if c.mode == Mode::Zone {
            rule(
                "multizone.zone.name",
                "must be set on a zone control plane".to_owned(),
            );
        }
    } else if let Err(reason) = check_dns_label(&zone.name) {
        rule(
            "multizone.zone.name",
            format!("{:?} is not a DNS label: {reason}", zone.name),
        );
    }
    if zone.kds.auth.token_path.is_some() && zone.kds.auth.token_inline.is_some() {
        rule(
            "multizone.zone.kds.auth.tokenInline",
            "must not be set together with multizone.zone.kds.auth.tokenPath".to_owned(),
        );
    }

    let health = &c.multizone.global.kds.zone_health_check;
    if health.timeout <= health.poll_interval {
        rule(
            "multizone.global.kds.zoneHealthCheck.timeout",
            format!(
                "must be longer than multizone.global.kds.zoneHealthCheck.pollInterval ({})",
                health.poll_interval
            ),
        );
    }
    let general = &c.general;
    if general.resilient_component_base_backoff > general.resilient_component_max_backoff {
        rule(
            "general.resilientComponentMaxBackoff",
            format!(
                "must not be shorter than general.resilientComponentBaseBackoff ({})",
                general.resilient_component_base_backoff
            ),
        );
    }

    for (key, size) in [
        (
            "multizone.global.kds.maxMsgSize",
            c.multizone.global.kds.max_msg_size,
        ),
        (
            "multizone.zone.kds.maxMsgSize",
            c.multizone.zone.kds.max_msg_size,
        ),
    ] {
        if size == 0 {
            rule(key, "must be greater than 0".to_owned());
        }
    }

    let pairs: [(&str, &Option<PathBuf>, &str, &Option<PathBuf>); 4] = [
        (
            "general.tlsCertFile",
            &c.general.tls_cert_file,
            "general.tlsKeyFile",
            &c.general.tls_key_file,
        ),
        (
            "apiServer.https.tlsCertFile",
            &c.api_server.https.tls_cert_file,
            "apiServer.https.tlsKeyFile",
            &c.api_server.https.tls_key_file,
        ),
        (
            "multizone.global.kds.tlsCertFile",
            &c.multizone.global.kds.tls_cert_file,
            "multizone.global.kds.tlsKeyFile",
            &c.multizone.global.kds.tls_key_file,
        ),
        (
            "store.postgres.tls.certPath",
            &c.store.postgres.tls.cert_path,
            "store.postgres.tls.keyPath",
            &c.store.postgres.tls.key_path,
        ),
    ];
    for (cert_key, cert, key_key, key) in pairs {
        match (cert, key) {
            (Some(_), None) => rule(key_key, format!("must be set when {cert_key} is set")),
            (None, Some(_)) => rule(cert_key, format!("must be set when {key_key} is set")),
            _ => {}
        }
    }

    let pg = &c.store.postgres;
    if matches!(pg.tls.mode, PgTlsMode::VerifyCa | PgTlsMode::VerifyFull)
        && pg.tls.ca_path.is_none()
    {
        rule(
            "store.postgres.tls.caPath",
            format!(
                "must be set when store.postgres.tls.mode is {}",
                pg.tls.mode
            ),
        );
    }
    if pg.max_open_connections != 0 && pg.min_open_connections > pg.max_open_connections {
        rule(
            "store.postgres.minOpenConnections",
            format!(
                "must not exceed store.postgres.maxOpenConnections ({})",
                pg.max_open_connections
            ),
        );
    }

    let https = &c.api_server.https;
    if https.require_client_cert && https.tls_ca_file.is_none() {
        rule(
            "apiServer.https.tlsCaFile",
            "must be set when apiServer.https.requireClientCert is true".to_owned(),
        );
    }
    if !c.api_server.gui.base_path.starts_with('/') {
        rule(
            "apiServer.gui.basePath",
            format!("{:?} must start with /", c.api_server.gui.base_path),
        );
    }
    if c.dns_server.domain.is_empty() {
        rule("dnsServer.domain", "must not be empty".to_owned());
    }

    problems
}

/// Every port setting.
fn ports(c: &Config) -> [(&'static str, u16); 11] {
    [
        ("store.postgres.port", c.store.postgres.port),
        ("apiServer.http.port", c.api_server.http.port),
        ("apiServer.https.port", c.api_server.https.port),
        ("diagnostics.serverPort", c.diagnostics.server_port),
        (
            "multizone.global.kds.grpcPort",
            c.multizone.global.kds.grpc_port,
        ),
        ("xdsServer.grpcPort", c.xds_server.grpc_port),
        ("bootstrapServer.port", c.bootstrap_server.port),
        ("dnsServer.port", c.dns_server.port),
        ("dnsServer.serviceVipPort", c.dns_server.service_vip_port),
        (
            "monitoringAssignmentServer.port",
            c.monitoring_assignment_server.port,
        ),
        ("adminServer.local.port", c.admin_server.local.port),
    ]
}

/// The TCP ports a control plane of this mode listens on (a zone's DNS serves TCP too).
fn tcp_listeners(c: &Config) -> Vec<(&'static str, u16)> {
    let mut listeners = Vec::new();
    if c.api_server.http.enabled {
        listeners.push(("apiServer.http.port", c.api_server.http.port));
    }
    if c.api_server.https.enabled {
        listeners.push(("apiServer.https.port", c.api_server.https.port));
    }
    listeners.push(("diagnostics.serverPort", c.diagnostics.server_port));
    match c.mode {
        Mode::Global => {
            listeners.push((
                "multizone.global.kds.grpcPort",
                c.multizone.global.kds.grpc_port,
            ));
        }
        Mode::Zone => listeners.extend([
            ("xdsServer.grpcPort", c.xds_server.grpc_port),
            ("bootstrapServer.port", c.bootstrap_server.port),
            (
                "monitoringAssignmentServer.port",
                c.monitoring_assignment_server.port,
            ),
            ("adminServer.local.port", c.admin_server.local.port),
            ("dnsServer.port", c.dns_server.port),
        ]),
    }
    listeners
}

/// RFC 1035 label: a lowercase letter first, then lowercase letters, digits and `-`, not
/// ending in `-`, at most 63 characters (Kuma's rule for zone names).
pub(crate) fn check_dns_label(name: &str) -> Result<(), &'static str> {
    if name.len() > 63 {
        return Err("longer than 63 characters");
    }
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_lowercase()) {
        return Err("must start with a lowercase letter");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("only lowercase letters, digits and - are allowed");
    }
    if name.ends_with('-') {
        return Err("must not end with -");
    }
    Ok(())
}

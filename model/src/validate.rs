//! Validation of resources. It never stops at the first problem: it returns every violation,
//! each with the path of the field in the kumactl form (`networking.inbound[0].tags`).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::LazyLock;

use regex::Regex;

use crate::labels::tags;
use crate::mesh_pb;
use crate::registry::ResourceType;
use crate::resource::{Resource, Spec};

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub message: String,
}

/// Every problem found in one resource.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub kind: ResourceType,
    pub name: String,
    pub violations: Vec<Violation>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} is invalid: ", self.kind, self.name)?;
        for (i, v) in self.violations.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", v.field, v.message)?;
        }
        Ok(())
    }
}

/// Collects violations while walking a resource.
#[derive(Default, Debug)]
pub struct Violations(Vec<Violation>);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Violation {
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<Violation> {
        self.0
    }
}

static NAME_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        .expect("static regex")
});
static MESH_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[0-9a-z\-_.]*$").expect("static regex"));
static TAG_NAME_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9.\-_:/]*$").expect("static regex"));
static TAG_VALUE_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9.\-_:]*$").expect("static regex"));
static SELECTOR_VALUE_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9.\-_:/*]*$").expect("static regex"));
static LABEL_NAME_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").expect("static regex")
});

/// Checks a resource as a user wrote it. `Ok` or every violation.
pub fn validate(resource: &Resource) -> Result<(), ValidationError> {
    let mut v = Violations::default();
    validate_meta(resource, &mut v);
    validate_spec(&resource.spec, &mut v);
    if v.is_empty() {
        Ok(())
    } else {
        Err(ValidationError {
            kind: resource.kind(),
            name: resource.meta.name.clone(),
            violations: v.into_vec(),
        })
    }
}

/// Resource names: RFC 1123 subdomains of at most 253 characters.
pub fn validate_name(name: &str, field: &str, v: &mut Violations) {
    if name.is_empty() {
        v.add(field, "cannot be empty");
    } else if name.len() > 253 {
        v.add(field, "must be at most 253 characters");
    } else if !NAME_RE.is_match(name) {
        v.add(
            field,
            "invalid name: must consist of lower case alphanumeric characters, '-' or '.', and start and end with an alphanumeric character",
        );
    }
}

fn validate_meta(resource: &Resource, v: &mut Violations) {
    validate_name(&resource.meta.name, "name", v);
    if resource.kind().is_mesh_scoped() {
        if resource.meta.mesh.is_empty() {
            v.add("mesh", "cannot be empty");
        } else if !MESH_RE.is_match(&resource.meta.mesh) {
            v.add("mesh", "invalid characters: allowed are lower case alphanumeric characters, '-', '_' and '.'");
        }
    }
    for (key, value) in &resource.meta.labels {
        let field = format!("labels[{key:?}]");
        if !is_qualified_name(key) {
            v.add(&field, "label key must be a qualified name: an optional DNS subdomain prefix and '/', then at most 63 alphanumeric characters, '-', '_' or '.'");
        }
        if value.len() > 63 || !(value.is_empty() || LABEL_NAME_RE.is_match(value)) {
            v.add(&field, "label value must be at most 63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character");
        }
    }
}

fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| !p.is_empty() && p.len() <= 253 && NAME_RE.is_match(p));
    prefix_ok && !name.is_empty() && name.len() <= 63 && LABEL_NAME_RE.is_match(name)
}

fn validate_spec(spec: &Spec, v: &mut Violations) {
    match spec {
        Spec::Mesh(m) => validate_mesh(m, v),
        Spec::Dataplane(dp) => validate_dataplane(dp, v),
        Spec::ZoneIngress(zi) => validate_zone_ingress(zi, v),
        Spec::Secret(s) | Spec::GlobalSecret(s) => {
            if s.data.as_ref().is_none_or(|d| d.value.is_empty()) {
                v.add("data", "cannot be empty");
            }
        }
        Spec::ExternalService(es) => validate_external_service(es, v),
        Spec::TrafficPermission(p) => validate_connection(&p.sources, &p.destinations, true, v),
        Spec::TrafficLog(p) => validate_connection(&p.sources, &p.destinations, true, v),
        Spec::CircuitBreaker(p) => {
            validate_connection(&p.sources, &p.destinations, true, v);
            require_conf(p.conf.is_some(), v);
        }
        Spec::FaultInjection(p) => {
            validate_connection(&p.sources, &p.destinations, true, v);
            validate_fault_injection(p.conf.as_ref(), v);
        }
        Spec::HealthCheck(p) => {
            validate_connection(&p.sources, &p.destinations, true, v);
            validate_health_check(p.conf.as_ref(), v);
        }
        Spec::RateLimit(p) => {
            validate_connection(&p.sources, &p.destinations, false, v);
            validate_rate_limit(p.conf.as_ref(), v);
        }
        Spec::Retry(p) => {
            validate_connection(&p.sources, &p.destinations, true, v);
            require_conf(p.conf.is_some(), v);
        }
        Spec::Timeout(p) => {
            validate_connection(&p.sources, &p.destinations, true, v);
            require_conf(p.conf.is_some(), v);
        }
        Spec::TrafficRoute(p) => {
            validate_connection(&p.sources, &p.destinations, true, v);
            validate_traffic_route(p.conf.as_ref(), v);
        }
        Spec::TrafficTrace(p) => validate_selectors(&p.selectors, "selectors", false, v),
        Spec::ProxyTemplate(p) => {
            validate_selectors(&p.selectors, "selectors", false, v);
            require_conf(p.conf.is_some(), v);
        }
        Spec::Zone(_)
        | Spec::ZoneInsight(_)
        | Spec::ZoneIngressInsight(_)
        | Spec::DataplaneInsight(_)
        | Spec::Config(_) => {}
    }
}

fn require_conf(present: bool, v: &mut Violations) {
    if !present {
        v.add("conf", "has to be defined");
    }
}

fn validate_port(port: u32, field: &str, v: &mut Violations) {
    if !(1..=65535).contains(&port) {
        v.add(field, "port must be in the range [1, 65535]");
    }
}

/// Tags of a dataplane inbound or an external service: names and values non-empty and
/// made of allowed characters.
fn validate_tags(tags: &HashMap<String, String>, field: &str, v: &mut Violations) {
    for (key, value) in sorted(tags) {
        if key.is_empty() {
            v.add(field, "tag name must be non-empty");
        } else if !TAG_NAME_RE.is_match(key) {
            v.add(format!("{field}[{key:?}]"), "tag name must consist of alphanumeric characters, dots, dashes, slashes, colons and underscores");
        }
        if value.is_empty() {
            v.add(format!("{field}[{key:?}]"), "tag value must be non-empty");
        } else if !TAG_VALUE_RE.is_match(value) {
            v.add(format!("{field}[{key:?}]"), "tag value must consist of alphanumeric characters, dots, dashes, colons and underscores");
        }
    }
}

fn sorted(map: &HashMap<String, String>) -> Vec<(&String, &String)> {
    let mut pairs: Vec<_> = map.iter().collect();
    pairs.sort();
    pairs
}

fn validate_selectors(
    selectors: &[mesh_pb::Selector],
    field: &str,
    require_service: bool,
    v: &mut Violations,
) {
    if selectors.is_empty() {
        v.add(field, "must have at least one element");
    }
    for (i, selector) in selectors.iter().enumerate() {
        let path = format!("{field}[{i}].match");
        validate_selector(&selector.r#match, &path, require_service, v);
    }
}

/// A selector: at least one tag; names and values made of allowed characters (`*` allowed).
pub fn validate_selector(
    selector: &HashMap<String, String>,
    field: &str,
    require_service: bool,
    v: &mut Violations,
) {
    if selector.is_empty() {
        v.add(field, "must have at least one tag");
    }
    if require_service && !selector.is_empty() && !selector.contains_key(tags::SERVICE) {
        v.add(
            field,
            format!("mandatory tag {:?} is missing", tags::SERVICE),
        );
    }
    for (key, value) in sorted(selector) {
        let tag = format!("{field}[{key:?}]");
        if key.is_empty() || !TAG_NAME_RE.is_match(key) {
            v.add(&tag, "tag name must consist of alphanumeric characters, dots, dashes, slashes, colons and underscores");
        }
        if value.is_empty() {
            v.add(&tag, "tag value must be non-empty");
        } else if !SELECTOR_VALUE_RE.is_match(value) {
            v.add(&tag, "tag value must consist of alphanumeric characters, dots, dashes, slashes, colons, underscores and '*'");
        }
    }
}

fn validate_connection(
    sources: &[mesh_pb::Selector],
    destinations: &[mesh_pb::Selector],
    destination_needs_service: bool,
    v: &mut Violations,
) {
    validate_selectors(sources, "sources", false, v);
    validate_selectors(destinations, "destinations", destination_needs_service, v);
}

fn validate_mesh(mesh: &mesh_pb::Mesh, v: &mut Violations) {
    if let Some(mtls) = &mesh.mtls {
        if mtls.backends.len() > 1 {
            v.add("mtls.backends", "cannot have more than 1 backends");
        }
        let mut names = Vec::new();
        for (i, backend) in mtls.backends.iter().enumerate() {
            let path = format!("mtls.backends[{i}]");
            if backend.name.is_empty() {
                v.add(format!("{path}.name"), "cannot be empty");
            } else if names.contains(&backend.name.as_str()) {
                v.add(
                    format!("{path}.name"),
                    format!(
                        "{:?} name is already used for another backend",
                        backend.name
                    ),
                );
            }
            names.push(backend.name.as_str());
            match backend.r#type.as_str() {
                "builtin" => {}
                "provided" => {
                    let conf = backend.conf.as_ref();
                    for key in ["cert", "key"] {
                        if conf.is_none_or(|c| !c.fields.contains_key(key)) {
                            v.add(format!("{path}.conf.{key}"), "has to be defined");
                        }
                    }
                }
                "" => v.add(format!("{path}.type"), "cannot be empty"),
                other => v.add(
                    format!("{path}.type"),
                    format!("unknown backend type {other:?}: valid values are builtin, provided"),
                ),
            }
        }
        if !mtls.enabled_backend.is_empty() && !names.contains(&mtls.enabled_backend.as_str()) {
            v.add(
                "mtls.enabledBackend",
                "has to be set to one of the backends in the mesh",
            );
        }
    }
    if let Some(metrics) = &mesh.metrics {
        let mut names = Vec::new();
        for (i, backend) in metrics.backends.iter().enumerate() {
            let path = format!("metrics.backends[{i}]");
            if backend.name.is_empty() {
                v.add(format!("{path}.name"), "cannot be empty");
            }
            names.push(backend.name.as_str());
            if backend.r#type != "prometheus" {
                v.add(
                    format!("{path}.type"),
                    "unknown backend type: valid values are prometheus",
                );
            }
            if let Some(port) = backend.conf.as_ref().and_then(|c| c.fields.get("port")) {
                use envoy_struct::kind_number;
                match kind_number(port) {
                    Some(p) if (1.0..=65535.0).contains(&p) && p.fract() == 0.0 => {}
                    _ => v.add(
                        format!("{path}.conf.port"),
                        "port must be in the range [1, 65535]",
                    ),
                }
            }
        }
        if !metrics.enabled_backend.is_empty() && !names.contains(&metrics.enabled_backend.as_str())
        {
            v.add(
                "metrics.enabledBackend",
                "has to be set to one of the backends in the mesh",
            );
        }
    }
    if let Some(logging) = &mesh.logging {
        let names: Vec<&str> = logging.backends.iter().map(|b| b.name.as_str()).collect();
        for (i, backend) in logging.backends.iter().enumerate() {
            if !matches!(backend.r#type.as_str(), "file" | "tcp") {
                v.add(
                    format!("logging.backends[{i}].type"),
                    "unknown backend type: valid values are file, tcp",
                );
            }
        }
        if !logging.default_backend.is_empty() && !names.contains(&logging.default_backend.as_str())
        {
            v.add(
                "logging.defaultBackend",
                "has to be set to one of the logging backends in the mesh",
            );
        }
    }
    if let Some(tracing) = &mesh.tracing {
        let names: Vec<&str> = tracing.backends.iter().map(|b| b.name.as_str()).collect();
        for (i, backend) in tracing.backends.iter().enumerate() {
            if !matches!(backend.r#type.as_str(), "zipkin" | "datadog") {
                v.add(
                    format!("tracing.backends[{i}].type"),
                    "unknown backend type: valid values are zipkin, datadog",
                );
            }
            if let Some(sampling) = backend.sampling.as_ref().map(|s| s.value)
                && !(0.0..=100.0).contains(&sampling)
            {
                v.add(
                    format!("tracing.backends[{i}].sampling"),
                    "has to be in [0.0 - 100.0] range",
                );
            }
        }
        if !tracing.default_backend.is_empty() && !names.contains(&tracing.default_backend.as_str())
        {
            v.add(
                "tracing.defaultBackend",
                "has to be set to one of the tracing backends in the mesh",
            );
        }
    }
}

/// Reading numbers out of a `google.protobuf.Struct`.
mod envoy_struct {
    use envoy_types::pb::google::protobuf::{Value, value::Kind};

    pub fn kind_number(value: &Value) -> Option<f64> {
        match &value.kind {
            Some(Kind::NumberValue(n)) => Some(*n),
            Some(Kind::StringValue(s)) => s.parse().ok(),
            _ => None,
        }
    }
}

fn validate_address(address: &str, field: &str, v: &mut Violations) {
    if address.is_empty() {
        v.add(field, "address can't be empty");
        return;
    }
    match address.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => v.add(field, "must not be 0.0.0.0 or ::"),
        Ok(_) => {}
        Err(_) if is_dns_name(address) => {}
        Err(_) => v.add(
            field,
            "address has to be a valid IP address or a domain name",
        ),
    }
}

fn is_dns_name(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn validate_ip(address: &str, field: &str, v: &mut Violations) {
    if !address.is_empty() && address.parse::<IpAddr>().is_err() {
        v.add(field, "address has to be a valid IP address");
    }
}

fn validate_dataplane(dp: &mesh_pb::Dataplane, v: &mut Violations) {
    let Some(net) = &dp.networking else {
        v.add("networking", "must be defined");
        return;
    };
    validate_address(&net.address, "networking.address", v);
    if !net.advertised_address.is_empty() {
        validate_address(&net.advertised_address, "networking.advertisedAddress", v);
    }
    if let Some(gateway) = &net.gateway {
        validate_tags(&gateway.tags, "networking.gateway.tags", v);
        if !gateway.tags.contains_key(tags::SERVICE) {
            v.add(
                "networking.gateway.tags",
                format!("mandatory tag {:?} is missing", tags::SERVICE),
            );
        }
        if !net.inbound.is_empty() {
            v.add(
                "networking.inbound",
                "inbound cannot be defined for a gateway",
            );
        }
    } else if net.inbound.is_empty() {
        v.add(
            "networking",
            "has to contain at least one inbound interface or gateway",
        );
    }
    for (i, inbound) in net.inbound.iter().enumerate() {
        let path = format!("networking.inbound[{i}]");
        validate_port(inbound.port, &format!("{path}.port"), v);
        if inbound.service_port != 0 {
            validate_port(inbound.service_port, &format!("{path}.servicePort"), v);
        }
        validate_ip(
            &inbound.service_address,
            &format!("{path}.serviceAddress"),
            v,
        );
        validate_ip(&inbound.address, &format!("{path}.address"), v);
        validate_tags(&inbound.tags, &format!("{path}.tags"), v);
        if !inbound.tags.contains_key(tags::SERVICE) {
            v.add(
                format!("{path}.tags"),
                format!("tag {:?} has to exist", tags::SERVICE),
            );
        }
        if let Some(protocol) = inbound.tags.get(tags::PROTOCOL)
            && !tags::PROTOCOLS.contains(&protocol.as_str())
        {
            v.add(
                format!("{path}.tags[{:?}]", tags::PROTOCOL),
                format!(
                    "tag {:?} has an invalid value {protocol:?}: allowed values are {}",
                    tags::PROTOCOL,
                    tags::PROTOCOLS.join(", ")
                ),
            );
        }
    }
    for (i, outbound) in net.outbound.iter().enumerate() {
        let path = format!("networking.outbound[{i}]");
        validate_port(outbound.port, &format!("{path}.port"), v);
        validate_ip(&outbound.address, &format!("{path}.address"), v);
        if outbound.backend_ref.is_none() {
            if !outbound.tags.contains_key(tags::SERVICE) {
                v.add(
                    format!("{path}.tags"),
                    format!("mandatory tag {:?} is missing", tags::SERVICE),
                );
            }
            validate_tags(&outbound.tags, &format!("{path}.tags"), v);
        }
    }
    if let Some(admin) = &net.admin
        && admin.port != 0
    {
        validate_port(admin.port, "networking.admin.port", v);
        let clashes = net.inbound.iter().any(|i| i.port == admin.port)
            || net
                .outbound
                .iter()
                .any(|o| o.port == admin.port && matches!(o.address.as_str(), "" | "127.0.0.1"));
        if clashes {
            v.add(
                "networking.admin.port",
                "must differ from the ports of inbound and outbound interfaces",
            );
        }
    }
}

fn validate_zone_ingress(zi: &mesh_pb::ZoneIngress, v: &mut Violations) {
    let Some(net) = &zi.networking else {
        v.add("networking", "must be defined");
        return;
    };
    validate_address(&net.address, "networking.address", v);
    validate_port(net.port, "networking.port", v);
    if !net.advertised_address.is_empty() || net.advertised_port != 0 {
        validate_address(&net.advertised_address, "networking.advertisedAddress", v);
        validate_port(net.advertised_port, "networking.advertisedPort", v);
    }
    for (i, service) in zi.available_services.iter().enumerate() {
        let path = format!("availableServices[{i}]");
        if !service.tags.contains_key(tags::SERVICE) {
            v.add(
                format!("{path}.tags"),
                format!("mandatory tag {:?} is missing", tags::SERVICE),
            );
        }
        if service.mesh.is_empty() {
            v.add(format!("{path}.mesh"), "cannot be empty");
        }
    }
}

fn validate_external_service(es: &mesh_pb::ExternalService, v: &mut Violations) {
    match es.networking.as_ref().map(|n| n.address.as_str()) {
        None | Some("") => v.add("networking.address", "address can't be empty"),
        Some(address) => match address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() => {
                if !port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p)) {
                    v.add("networking.address", "port must be in the range [1, 65535]");
                }
            }
            _ => v.add(
                "networking.address",
                "address has to be in the form host:port",
            ),
        },
    }
    validate_tags(&es.tags, "tags", v);
    if !es.tags.contains_key(tags::SERVICE) {
        v.add(
            "tags",
            format!("mandatory tag {:?} is missing", tags::SERVICE),
        );
    }
}

fn validate_traffic_route(conf: Option<&mesh_pb::traffic_route::Conf>, v: &mut Violations) {
    let Some(conf) = conf else {
        v.add("conf", "has to be defined");
        return;
    };
    match (conf.split.is_empty(), conf.destination.is_empty()) {
        (true, true) => v.add("conf", "requires either \"destination\" or \"split\""),
        (false, false) => v.add(
            "conf",
            "\"split\" cannot be defined at the same time as \"destination\"",
        ),
        _ => {}
    }
    if !conf.destination.is_empty() {
        validate_selector(&conf.destination, "conf.destination", true, v);
    }
    if !conf.split.is_empty() {
        let mut total = 0u64;
        for (i, split) in conf.split.iter().enumerate() {
            let path = format!("conf.split[{i}]");
            match split.weight {
                None => v.add(format!("{path}.weight"), "has to be defined"),
                Some(w) => total += u64::from(w.value),
            }
            validate_selector(&split.destination, &format!("{path}.destination"), true, v);
        }
        if total == 0 {
            v.add(
                "conf.split",
                "there must be at least one split entry with weight above 0",
            );
        }
    }
    for (i, http) in conf.http.iter().enumerate() {
        let path = format!("conf.http[{i}]");
        match (http.split.is_empty(), http.destination.is_empty()) {
            (true, true) => v.add(&path, "requires either \"destination\" or \"split\""),
            (false, false) => v.add(
                &path,
                "\"split\" cannot be defined at the same time as \"destination\"",
            ),
            _ => {}
        }
        if !http.destination.is_empty() {
            validate_selector(&http.destination, &format!("{path}.destination"), true, v);
        }
    }
}

fn is_positive(d: Option<&envoy_types::pb::google::protobuf::Duration>) -> bool {
    d.is_some_and(|d| d.seconds > 0 || (d.seconds == 0 && d.nanos > 0))
}

fn validate_health_check(conf: Option<&mesh_pb::health_check::Conf>, v: &mut Violations) {
    let Some(conf) = conf else {
        v.add("conf", "has to be defined");
        return;
    };
    if !is_positive(conf.interval.as_ref()) {
        v.add("conf.interval", "must be greater than 0s");
    }
    if !is_positive(conf.timeout.as_ref()) {
        v.add("conf.timeout", "must be greater than 0s");
    }
    if conf.unhealthy_threshold == 0 {
        v.add("conf.unhealthyThreshold", "must be greater than 0");
    }
    if conf.healthy_threshold == 0 {
        v.add("conf.healthyThreshold", "must be greater than 0");
    }
    if conf.tcp.is_some() && conf.http.is_some() {
        v.add("conf", "http and tcp cannot be defined at the same time");
    }
    if let Some(http) = &conf.http {
        if !http.path.starts_with('/') {
            v.add("conf.http.path", "has to be a valid path starting with '/'");
        }
        for (i, status) in http.expected_statuses.iter().enumerate() {
            if !(100..600).contains(&status.value) {
                v.add(
                    format!("conf.http.expectedStatuses[{i}]"),
                    "must be in range [100, 600)",
                );
            }
        }
    }
}

fn validate_percentage(p: Option<f64>, field: &str, v: &mut Violations) {
    match p {
        None => v.add(field, "cannot be empty"),
        Some(p) if !(0.0..=100.0).contains(&p) => v.add(field, "has to be in [0.0 - 100.0] range"),
        Some(_) => {}
    }
}

fn validate_fault_injection(conf: Option<&mesh_pb::fault_injection::Conf>, v: &mut Violations) {
    let Some(conf) = conf else {
        v.add("conf", "has to be defined");
        return;
    };
    if conf.delay.is_none() && conf.abort.is_none() && conf.response_bandwidth.is_none() {
        v.add("conf", "must have at least one of the faults configured");
    }
    if let Some(delay) = &conf.delay {
        validate_percentage(
            delay.percentage.as_ref().map(|p| p.value),
            "conf.delay.percentage",
            v,
        );
        if !is_positive(delay.value.as_ref()) {
            v.add("conf.delay.value", "must be greater than 0s");
        }
    }
    if let Some(abort) = &conf.abort {
        validate_percentage(
            abort.percentage.as_ref().map(|p| p.value),
            "conf.abort.percentage",
            v,
        );
        if !abort
            .http_status
            .as_ref()
            .is_some_and(|s| (100..600).contains(&s.value))
        {
            v.add("conf.abort.httpStatus", "must be in range [100, 600)");
        }
    }
    if let Some(bw) = &conf.response_bandwidth {
        validate_percentage(
            bw.percentage.as_ref().map(|p| p.value),
            "conf.responseBandwidth.percentage",
            v,
        );
        let ok = bw
            .limit
            .as_ref()
            .map(|l| l.value.as_str())
            .is_some_and(|l| {
                ["kbps", "mbps", "gbps"].iter().any(|unit| {
                    l.strip_suffix(unit)
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                })
            });
        if !ok {
            v.add(
                "conf.responseBandwidth.limit",
                "has to be a number followed by kbps, mbps or gbps",
            );
        }
    }
}

fn validate_rate_limit(conf: Option<&mesh_pb::rate_limit::Conf>, v: &mut Violations) {
    let Some(http) = conf.and_then(|c| c.http.as_ref()) else {
        v.add("conf.http", "has to be defined");
        return;
    };
    if http.requests == 0 {
        v.add(
            "conf.http.requests",
            "requests must be set to a value greater than 0",
        );
    }
    if !is_positive(http.interval.as_ref()) {
        v.add("conf.http.interval", "interval must be greater than 0s");
    }
}

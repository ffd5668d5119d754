//! The one registry of resource types: names, REST paths, scope, sync direction and
//! who may write each type.

use std::fmt;
use std::str::FromStr;

/// Where a resource lives: beside meshes (global scope) or inside one mesh.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Global,
    Mesh,
}

/// Which way KDS carries a type between the global and the zones.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum SyncDirection {
    /// Not synced.
    None,
    /// Authored on the global, sent down to every zone.
    GlobalToZone,
    /// Authored in a zone, sent up to the global.
    ZoneToGlobal,
    /// Authored in a zone, sent up to the global, which re-broadcasts it to the other zones.
    ZoneToGlobalToZones,
}

/// The role of the control plane that serves an API, which decides what users may write.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum CpMode {
    Global,
    /// A zone connected to a global.
    FederatedZone,
    /// A zone without a global: it owns every type.
    Standalone,
}

/// Static facts about one resource type.
#[derive(Debug)]
pub struct TypeDescriptor {
    pub kind: ResourceType,
    /// Kuma's type name, e.g. `TrafficPermission`.
    pub name: &'static str,
    /// REST path segment, e.g. `traffic-permissions`.
    pub plural: &'static str,
    /// A second REST path segment served for the same type (older spelling).
    pub alt_plural: Option<&'static str>,
    /// `kumactl get <singular>` argument.
    pub cli_singular: &'static str,
    /// `kumactl get <plural>` argument.
    pub cli_plural: &'static str,
    pub scope: Scope,
    pub sync: SyncDirection,
    /// Users may author it on the global.
    pub provided_by_global: bool,
    /// Users may author it in a zone.
    pub provided_by_zone: bool,
    /// Written only by the control plane itself (insights), never through the API.
    pub system_only: bool,
    /// Only admins may read or write it (secrets).
    pub admin_only: bool,
    /// A classic selector policy.
    pub is_policy: bool,
    /// Full protobuf name of the spec message, e.g. `kuma.mesh.v1alpha1.TrafficPermission`.
    pub spec_proto: &'static str,
    /// Served over the REST API (Config is internal).
    pub has_rest: bool,
}

impl TypeDescriptor {
    /// Whether users may not write this type through the API of a CP in `mode`.
    pub fn is_read_only(&self, mode: CpMode) -> bool {
        if self.system_only {
            return true;
        }
        match mode {
            CpMode::Global => !self.provided_by_global,
            CpMode::FederatedZone => !self.provided_by_zone,
            CpMode::Standalone => false,
        }
    }
}

macro_rules! registry {
    ($( $kind:ident {
        plural: $plural:literal, alt: $alt:expr, cli: ($cs:literal, $cp:literal),
        scope: $scope:ident, sync: $sync:ident, by_global: $bg:literal, by_zone: $bz:literal,
        system: $sys:literal, admin: $adm:literal, policy: $pol:literal, rest: $rest:literal,
        proto: $proto:literal
    } ),* $(,)?) => {
        /// Every resource type this control plane knows.
        #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ResourceType { $($kind),* }

        static DESCRIPTORS: &[TypeDescriptor] = &[$(
            TypeDescriptor {
                kind: ResourceType::$kind,
                name: stringify!($kind),
                plural: $plural,
                alt_plural: $alt,
                cli_singular: $cs,
                cli_plural: $cp,
                scope: Scope::$scope,
                sync: SyncDirection::$sync,
                provided_by_global: $bg,
                provided_by_zone: $bz,
                system_only: $sys,
                admin_only: $adm,
                is_policy: $pol,
                spec_proto: $proto,
                has_rest: $rest,
            }
        ),*];

        impl ResourceType {
            /// Every type, in registry order.
            pub const ALL: &'static [ResourceType] = &[$(ResourceType::$kind),*];
        }
    };
}

registry! {
    Mesh { plural: "meshes", alt: None, cli: ("mesh", "meshes"), scope: Global, sync: GlobalToZone,
        by_global: true, by_zone: false, system: false, admin: false, policy: false, rest: true,
        proto: "kuma.mesh.v1alpha1.Mesh" },
    Zone { plural: "zones", alt: None, cli: ("zone", "zones"), scope: Global, sync: None,
        by_global: true, by_zone: true, system: false, admin: false, policy: false, rest: true,
        proto: "kuma.system.v1alpha1.Zone" },
    ZoneInsight { plural: "zone-insights", alt: None, cli: ("zone-insight", "zone-insights"), scope: Global, sync: None,
        by_global: false, by_zone: false, system: true, admin: false, policy: false, rest: true,
        proto: "kuma.system.v1alpha1.ZoneInsight" },
    ZoneIngress { plural: "zoneingresses", alt: Some("zone-ingresses"), cli: ("zoneingress", "zoneingresses"), scope: Global, sync: ZoneToGlobalToZones,
        by_global: false, by_zone: true, system: false, admin: false, policy: false, rest: true,
        proto: "kuma.mesh.v1alpha1.ZoneIngress" },
    ZoneIngressInsight { plural: "zone-ingress-insights", alt: None, cli: ("zone-ingress-insight", "zone-ingress-insights"), scope: Global, sync: ZoneToGlobal,
        by_global: false, by_zone: false, system: true, admin: false, policy: false, rest: true,
        proto: "kuma.mesh.v1alpha1.ZoneIngressInsight" },
    GlobalSecret { plural: "globalsecrets", alt: Some("global-secrets"), cli: ("globalsecret", "globalsecrets"), scope: Global, sync: GlobalToZone,
        by_global: true, by_zone: true, system: false, admin: true, policy: false, rest: true,
        proto: "kuma.system.v1alpha1.Secret" },
    Config { plural: "configs", alt: None, cli: ("config", "configs"), scope: Global, sync: GlobalToZone,
        by_global: true, by_zone: true, system: false, admin: false, policy: false, rest: false,
        proto: "kuma.system.v1alpha1.Config" },
    Dataplane { plural: "dataplanes", alt: None, cli: ("dataplane", "dataplanes"), scope: Mesh, sync: ZoneToGlobal,
        by_global: false, by_zone: true, system: false, admin: false, policy: false, rest: true,
        proto: "kuma.mesh.v1alpha1.Dataplane" },
    DataplaneInsight { plural: "dataplane-insights", alt: None, cli: ("dataplane-insight", "dataplane-insights"), scope: Mesh, sync: ZoneToGlobal,
        by_global: false, by_zone: false, system: true, admin: false, policy: false, rest: true,
        proto: "kuma.mesh.v1alpha1.DataplaneInsight" },
    Secret { plural: "secrets", alt: None, cli: ("secret", "secrets"), scope: Mesh, sync: GlobalToZone,
        by_global: true, by_zone: true, system: false, admin: true, policy: false, rest: true,
        proto: "kuma.system.v1alpha1.Secret" },
    ExternalService { plural: "external-services", alt: None, cli: ("external-service", "external-services"), scope: Mesh, sync: GlobalToZone,
        by_global: true, by_zone: false, system: false, admin: false, policy: false, rest: true,
        proto: "kuma.mesh.v1alpha1.ExternalService" },
    CircuitBreaker { plural: "circuit-breakers", alt: None, cli: ("circuit-breaker", "circuit-breakers"), scope: Mesh, sync: GlobalToZone,
        by_global: true, by_zone: false, system: false, admin: false, policy: true, rest: true,
        proto: "kuma.mesh.v1alpha1.CircuitBreaker" },
    FaultInjection { plural: "fault-injections", alt: None, cli: ("fault-injection", "fault-injections"), scope: Mesh, sync: GlobalToZone,
        by_global: true, by_zone: false, system: false, admin: false, policy: true, rest: true,
        proto: "kuma.mesh.v1alpha1.FaultInjection" },
    HealthCheck { plural: "health-checks", alt: None, cli: ("healthcheck", "healthchecks"), scope: Mesh, sync: GlobalToZone,
        by_global: true, by_zone: false, system: false, admin: false, policy: true, rest: true,
        proto: "kuma.mesh.v1alpha1.HealthCheck" },
    ProxyTemplate { plural: "proxytemplates", alt: None, cli: ("proxytemplate", "proxytemplates"), scope: Mesh, sync: GlobalToZone,
        by_global: true, by_zone: false, system: false, admin: false, policy: true, rest: true,
        proto: "kuma.mesh.v1alpha1.ProxyTemplate" },
    RateLimit { plural: "rate-limits", alt: None, cli: ("rate-limit", "rate-limits"), scope: Mesh, sync: GlobalToZone,
        by_global: true, by_zone: false, system: false, admin: false, policy: true, rest: true,
        proto: "kuma.mesh.v1alpha1.RateLimit" },
    Retry { plural: "retries", alt: None, cli: ("retry", "retries"), scope: Mesh, sync: GlobalToZone,
        by_global: true, by_zone: false, system: false, admin: false, policy: true, rest: true,
        proto: "kuma.mesh.v1alpha1.Retry" },
    Timeout { plural: "timeouts", alt: None, cli: ("timeout", "timeouts"), scope: Mesh, sync: GlobalToZone,
        by_global: true, by_zone: false, system: false, admin: false, policy: true, rest: true,
        proto: "kuma.mesh.v1alpha1.Timeout" },
    TrafficLog { plural: "traffic-logs", alt: None, cli: ("traffic-log", "traffic-logs"), scope: Mesh, sync: GlobalToZone,
        by_global: true, by_zone: false, system: false, admin: false, policy: true, rest: true,
        proto: "kuma.mesh.v1alpha1.TrafficLog" },
    TrafficPermission { plural: "traffic-permissions", alt: None, cli: ("traffic-permission", "traffic-permissions"), scope: Mesh, sync: GlobalToZone,
        by_global: true, by_zone: false, system: false, admin: false, policy: true, rest: true,
        proto: "kuma.mesh.v1alpha1.TrafficPermission" },
    TrafficRoute { plural: "traffic-routes", alt: None, cli: ("traffic-route", "traffic-routes"), scope: Mesh, sync: GlobalToZone,
        by_global: true, by_zone: false, system: false, admin: false, policy: true, rest: true,
        proto: "kuma.mesh.v1alpha1.TrafficRoute" },
    TrafficTrace { plural: "traffic-traces", alt: None, cli: ("traffic-trace", "traffic-traces"), scope: Mesh, sync: GlobalToZone,
        by_global: true, by_zone: false, system: false, admin: false, policy: true, rest: true,
        proto: "kuma.mesh.v1alpha1.TrafficTrace" },
}

impl ResourceType {
    /// The static facts of this type.
    pub fn descriptor(self) -> &'static TypeDescriptor {
        // The table is built by the same macro as the enum, in the same order.
        &DESCRIPTORS[self as usize]
    }

    /// Kuma's type name, e.g. `TrafficRoute`.
    pub fn name(self) -> &'static str {
        self.descriptor().name
    }

    pub fn scope(self) -> Scope {
        self.descriptor().scope
    }

    pub fn is_mesh_scoped(self) -> bool {
        self.scope() == Scope::Mesh
    }

    /// Finds a type by Kuma's type name (`TrafficRoute`).
    pub fn from_name(name: &str) -> Option<ResourceType> {
        DESCRIPTORS.iter().find(|d| d.name == name).map(|d| d.kind)
    }

    /// Finds a type by a REST path segment (`traffic-routes`, `zone-ingresses`).
    pub fn from_plural(plural: &str) -> Option<ResourceType> {
        DESCRIPTORS
            .iter()
            .find(|d| d.has_rest && (d.plural == plural || d.alt_plural == Some(plural)))
            .map(|d| d.kind)
    }

    /// Finds a type by a `kumactl get` argument, singular or plural.
    pub fn from_cli_arg(arg: &str) -> Option<ResourceType> {
        DESCRIPTORS
            .iter()
            .find(|d| {
                d.cli_singular == arg
                    || d.cli_plural == arg
                    || (d.kind == ResourceType::GlobalSecret
                        && (arg == "global-secret" || arg == "global-secrets"))
            })
            .map(|d| d.kind)
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a type name that is not in the registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown resource type {0:?}")]
pub struct UnknownType(pub String);

impl FromStr for ResourceType {
    type Err = UnknownType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ResourceType::from_name(s).ok_or_else(|| UnknownType(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_table_matches_enum_order() {
        for (i, kind) in ResourceType::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, i);
            assert_eq!(kind.descriptor().kind, *kind);
        }
    }

    #[test]
    fn kuma_paths() {
        assert_eq!(
            ResourceType::from_plural("health-checks"),
            Some(ResourceType::HealthCheck)
        );
        assert_eq!(
            ResourceType::from_cli_arg("healthcheck"),
            Some(ResourceType::HealthCheck)
        );
        assert_eq!(
            ResourceType::from_plural("zone-ingresses"),
            Some(ResourceType::ZoneIngress)
        );
        assert_eq!(
            ResourceType::from_plural("zoneingresses"),
            Some(ResourceType::ZoneIngress)
        );
        assert_eq!(
            ResourceType::from_plural("global-secrets"),
            Some(ResourceType::GlobalSecret)
        );
        assert_eq!(
            ResourceType::from_cli_arg("global-secret"),
            Some(ResourceType::GlobalSecret)
        );
        assert_eq!(
            ResourceType::from_plural("configs"),
            None,
            "Config has no REST path"
        );
        assert_eq!(
            "TrafficRoute".parse::<ResourceType>(),
            Ok(ResourceType::TrafficRoute)
        );
    }

    #[test]
    fn read_only_rules() {
        let mesh = ResourceType::Mesh.descriptor();
        assert!(!mesh.is_read_only(CpMode::Global));
        assert!(mesh.is_read_only(CpMode::FederatedZone));
        assert!(!mesh.is_read_only(CpMode::Standalone));
        let dp = ResourceType::Dataplane.descriptor();
        assert!(dp.is_read_only(CpMode::Global));
        assert!(!dp.is_read_only(CpMode::FederatedZone));
        let insight = ResourceType::ZoneInsight.descriptor();
        assert!(insight.is_read_only(CpMode::Standalone));
    }
}

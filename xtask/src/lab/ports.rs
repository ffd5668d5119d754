//! The lab's port scheme: which port each process of the lab listens on.
//!
//! Every process has a *slot*: the global is slot 0, zone `N` (with its ingress, sidecar and
//! application) slot `N`. Without a port base (`--port-base 0`, the default) the global gets
//! Kuma's standard ports and zone `N` gets `N * 10000` + the standard port (zone-1's API on
//! 15681, zone-2's on 25681). With a port base `B`, port `i` of slot `s` is
//! `B + s * STRIDE + i`: the whole lab lives in `STRIDE * (zones + 1)` consecutive ports, so a
//! test can run it on a free range.

use anyhow::{Result, bail};

/// Ports a slot may use when a port base is given.
pub const STRIDE: u16 = 16;

/// Lowest port base accepted (ports below need privileges).
const MIN_BASE: u16 = 1024;

/// One listening port of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// REST API and GUI (`apiServer.http.port`).
    Api,
    /// `/ready`, `/metrics` (`diagnostics.serverPort`).
    Diagnostics,
    /// KDS server of the global (`multizone.global.kds.grpcPort`).
    Kds,
    /// ADS server of a zone (`xdsServer.grpcPort`).
    Xds,
    /// Bootstrap server of a zone (`bootstrapServer.port`), kuma-dp's `--cp-address`.
    Bootstrap,
    /// DNS server of a zone, UDP and TCP (`dnsServer.port`).
    Dns,
    /// Monitoring assignment server of a zone (`monitoringAssignmentServer.port`).
    Mads,
    /// Admin (dataplane token) server of a zone (`adminServer.local.port`).
    Admin,
    /// The zone ingress's listener (its `networking.port`).
    Ingress,
    /// The zone ingress's Envoy admin.
    IngressAdmin,
    /// The demo application of the zone (served by the lab itself).
    App,
    /// The sidecar's inbound listener in front of the application.
    Inbound,
    /// The sidecar's Envoy admin.
    SidecarAdmin,
    /// The sidecar's outbound listener (the frontend's way to the backend).
    Outbound,
}

impl Port {
    /// Every port, in the order of their offsets under a port base.
    pub const ALL: [Port; 14] = [
        Port::Api,
        Port::Diagnostics,
        Port::Kds,
        Port::Xds,
        Port::Bootstrap,
        Port::Dns,
        Port::Mads,
        Port::Admin,
        Port::Ingress,
        Port::IngressAdmin,
        Port::App,
        Port::Inbound,
        Port::SidecarAdmin,
        Port::Outbound,
    ];

    /// The port without a port base: Kuma's default for control-plane ports, and numbers
    /// next to them for the lab's proxies and applications.
    pub fn standard(self) -> u16 {
        match self {
            Port::Api => 5681,
            Port::Diagnostics => 5680,
            Port::Kds => 5685,
            Port::Xds => 5678,
            Port::Bootstrap => 5682,
            Port::Dns => 5653,
            Port::Mads => 5676,
            Port::Admin => 5679,
            Port::Ingress => 5690,
            Port::IngressAdmin => 5691,
            Port::App => 5700,
            Port::Inbound => 5701,
            Port::SidecarAdmin => 5702,
            Port::Outbound => 5703,
        }
    }

    fn offset(self) -> u16 {
        // ALL has 14 entries: the index always fits.
        Port::ALL
            .iter()
            .position(|p| *p == self)
            .map_or(0, |i| i as u16)
    }

    /// A short name for tables and messages.
    pub fn label(self) -> &'static str {
        match self {
            Port::Api => "api",
            Port::Diagnostics => "diagnostics",
            Port::Kds => "kds",
            Port::Xds => "xds",
            Port::Bootstrap => "bootstrap",
            Port::Dns => "dns",
            Port::Mads => "mads",
            Port::Admin => "admin",
            Port::Ingress => "ingress",
            Port::IngressAdmin => "envoy-admin",
            Port::App => "app",
            Port::Inbound => "inbound",
            Port::SidecarAdmin => "envoy-admin",
            Port::Outbound => "outbound",
        }
    }
}

/// The ports of a lab with a given port base and number of zones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    base: u16,
    zones: u16,
}

impl Ports {
    /// Checks that every port of the global and `zones` zones fits in 1024..=65535.
    pub fn new(base: u16, zones: u16) -> Result<Ports> {
        if base == 0 {
            let highest = u32::from(zones) * 10_000 + 9_999;
            if highest > u32::from(u16::MAX) {
                bail!(
                    "{zones} zones do not fit the standard port scheme (at most 5); use --port-base"
                );
            }
        } else {
            let highest = u32::from(base) + u32::from(zones + 1) * u32::from(STRIDE) - 1;
            if base < MIN_BASE || highest > u32::from(u16::MAX) {
                bail!(
                    "--port-base {base}: the lab needs ports {base}..={highest}; choose a base from {MIN_BASE} to {}",
                    u32::from(u16::MAX) + 1 - u32::from(zones + 1) * u32::from(STRIDE)
                );
            }
        }
        Ok(Ports { base, zones })
    }

    pub fn global(&self, port: Port) -> u16 {
        self.slot(0, port)
    }

    /// Port `port` of zone `zone` (1-based).
    pub fn zone(&self, zone: u16, port: Port) -> u16 {
        self.slot(zone, port)
    }

    fn slot(&self, slot: u16, port: Port) -> u16 {
        // `new` checked that the highest slot fits.
        if self.base == 0 {
            slot * 10_000 + port.standard()
        } else {
            self.base + slot * STRIDE + port.offset()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_base_the_global_has_kumas_ports_and_zones_are_offset_by_10000() {
        let ports = Ports::new(0, 2).expect("standard scheme");
        assert_eq!(ports.global(Port::Api), 5681);
        assert_eq!(ports.global(Port::Diagnostics), 5680);
        assert_eq!(ports.global(Port::Kds), 5685);
        assert_eq!(ports.zone(1, Port::Api), 15681);
        assert_eq!(ports.zone(1, Port::Xds), 15678);
        assert_eq!(ports.zone(1, Port::Bootstrap), 15682);
        assert_eq!(ports.zone(1, Port::Admin), 15679);
        assert_eq!(ports.zone(2, Port::Api), 25681);
        assert_eq!(ports.zone(2, Port::Dns), 25653);
        assert_eq!(ports.zone(2, Port::Ingress), 25690);
        assert_eq!(ports.zone(1, Port::Outbound), 15703);
    }

    #[test]
    fn with_a_base_every_port_is_derived_from_it_and_none_repeats() {
        let ports = Ports::new(40_000, 2).expect("a base");
        assert_eq!(ports.global(Port::Api), 40_000);
        assert_eq!(ports.global(Port::Kds), 40_002);
        assert_eq!(ports.zone(1, Port::Api), 40_000 + STRIDE);
        assert_eq!(ports.zone(2, Port::Outbound), 40_000 + 2 * STRIDE + 13);
        let mut all: Vec<u16> = (0..=2)
            .flat_map(|slot| Port::ALL.map(|p| ports.slot(slot, p)))
            .collect();
        assert!(
            all.iter()
                .all(|p| (40_000..40_000 + 3 * STRIDE).contains(p))
        );
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "two ports coincide");
    }

    #[test]
    fn the_standard_ports_do_not_repeat_either() {
        let ports = Ports::new(0, 2).expect("standard scheme");
        let mut all: Vec<u16> = (0..=2)
            .flat_map(|slot| Port::ALL.map(|p| ports.slot(slot, p)))
            .collect();
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "two ports coincide");
    }

    #[test]
    fn a_base_too_low_or_too_high_is_refused() {
        assert!(Ports::new(80, 2).is_err());
        assert!(Ports::new(65_500, 2).is_err());
        assert!(Ports::new(u16::MAX - 3 * STRIDE + 1, 2).is_ok());
        assert!(Ports::new(u16::MAX - 3 * STRIDE + 2, 2).is_err());
        let error = Ports::new(65_500, 2).expect_err("too high").to_string();
        assert!(error.contains("65500..=65547"), "{error}");
    }
}

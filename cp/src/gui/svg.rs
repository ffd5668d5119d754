//! Geometry of the two pictures the GUI draws server-side as inline SVG: the federation's
//! topology (global, zones, their ingresses) and a zone's lag over time. Pure: the templates
//! turn these numbers and (escaped) labels into `<svg>` elements.

use std::time::SystemTime;

use super::view::{CrossZonePath, Health, IngressRow, ZoneRow, short_duration};

/// A box of the topology.
#[derive(Clone, Debug)]
pub struct Node {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
    /// `global`, `zone` or `ingress`.
    pub kind: &'static str,
    pub name: String,
    pub detail: String,
    pub health: Health,
    pub href: String,
}

impl Node {
    pub fn cx(&self) -> i32 {
        self.x + self.w / 2
    }

    pub fn text_y(&self) -> i32 {
        self.y + self.h / 2 - 4
    }

    pub fn detail_y(&self) -> i32 {
        self.y + self.h / 2 + 14
    }
}

/// A line between two boxes, coloured by the health of its far end.
#[derive(Clone, Debug)]
pub struct Edge {
    pub x1: i32,
    pub y1: i32,
    pub x2: i32,
    pub y2: i32,
    pub health: Health,
}

/// A cross-zone path drawn from the calling zone to the ingress it goes through: `d` is an
/// SVG path (numbers only).
#[derive(Clone, Debug)]
pub struct PathLine {
    pub d: String,
    pub label: String,
    pub label_x: i32,
    pub label_y: i32,
}

/// The topology picture.
#[derive(Clone, Debug)]
pub struct Topology {
    pub width: i32,
    pub height: i32,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub paths: Vec<PathLine>,
}

const ZONE_W: i32 = 210;
const ZONE_H: i32 = 64;
const GAP: i32 = 70;
const INGRESS_H: i32 = 44;

/// Global on top, its zones in a row (coloured by status, with their lag), each zone's
/// ingresses under it. `hub` is the global's box (`None` for a standalone zone);
/// `base` prefixes links.
pub fn topology(
    hub: Option<(String, Health, String)>,
    zones: &[ZoneRow],
    ingresses: &[IngressRow],
    paths: &[CrossZonePath],
    base: &str,
    zone_links: bool,
) -> Topology {
    let columns = zones.len().max(1) as i32;
    let width = (columns * (ZONE_W + GAP) + GAP).max(760);
    let left = (width - (columns * (ZONE_W + GAP) - GAP)) / 2;
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    let zone_y = if hub.is_some() { 130 } else { 20 };
    let hub_node = hub.map(|(name, health, detail)| Node {
        x: width / 2 - 110,
        y: 20,
        w: 220,
        h: 56,
        kind: "global",
        name,
        detail,
        health,
        href: format!("{base}/zones"),
    });
    let mut bottom = zone_y + ZONE_H;
    for (i, zone) in zones.iter().enumerate() {
        let x = left + i as i32 * (ZONE_W + GAP);
        let node = Node {
            x,
            y: zone_y,
            w: ZONE_W,
            h: ZONE_H,
            kind: "zone",
            name: zone.name.clone(),
            detail: zone.lag_text(),
            health: zone.health,
            href: if zone_links {
                format!("{base}/zones/{}", super::view::path_segment(&zone.name))
            } else {
                format!("{base}/zones")
            },
        };
        if let Some(hub) = &hub_node {
            edges.push(Edge {
                x1: hub.cx(),
                y1: hub.y + hub.h,
                x2: node.cx(),
                y2: node.y,
                health: zone.health,
            });
        }
        let mut y = zone_y + ZONE_H + 60;
        for ingress in ingresses.iter().filter(|g| g.zone == zone.name) {
            let ingress_node = Node {
                x: x + 10,
                y,
                w: ZONE_W - 20,
                h: INGRESS_H,
                kind: "ingress",
                name: ingress.display.clone(),
                detail: format!("ingress · {}", ingress.services_count()),
                health: ingress.health,
                href: format!("{base}/zone-ingresses"),
            };
            edges.push(Edge {
                x1: node.cx(),
                y1: if y == zone_y + ZONE_H + 60 {
                    node.y + node.h
                } else {
                    y - 10
                },
                x2: ingress_node.cx(),
                y2: ingress_node.y,
                health: ingress.health,
            });
            y += INGRESS_H + 10;
            bottom = bottom.max(ingress_node.y + ingress_node.h);
            nodes.push(ingress_node);
        }
        nodes.push(node);
    }
    let mut lines = Vec::new();
    for path in paths {
        let from = nodes
            .iter()
            .find(|n| n.kind == "zone" && n.name == path.from_zone);
        let to = nodes
            .iter()
            .find(|n| n.kind == "ingress" && n.name == path.via);
        let (Some(from), Some(to)) = (from, to) else {
            continue;
        };
        let rightwards = to.cx() > from.cx();
        let sx = if rightwards {
            from.x + from.w * 3 / 4
        } else {
            from.x + from.w / 4
        };
        let sy = from.y + from.h;
        let (ex, ey) = if rightwards {
            (to.x, to.y + to.h / 2)
        } else {
            (to.x + to.w, to.y + to.h / 2)
        };
        let bend = if rightwards { -40 } else { 40 };
        lines.push(PathLine {
            d: format!("M {sx} {sy} C {sx} {} {} {ey} {ex} {ey}", ey, ex + bend),
            label: format!(
                "{} ({}) → {} through {}",
                path.from, path.from_zone, path.service, path.via
            ),
            label_x: width / 2,
            label_y: 0,
        });
    }
    for (i, line) in lines.iter_mut().enumerate() {
        line.label_y = bottom + 24 + 18 * i as i32;
    }
    if let Some(last) = lines.last() {
        bottom = last.label_y + 6;
    }
    if let Some(hub) = hub_node {
        nodes.push(hub);
    }
    Topology {
        width,
        height: bottom + 20,
        nodes,
        edges,
        paths: lines,
    }
}

/// One point of a zone's lag history.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub at: SystemTime,
    pub global_to_zone_seconds: f64,
    pub global_to_zone_revisions: u64,
    pub zone_to_global_seconds: f64,
    pub zone_to_global_revisions: u64,
}

/// One line of a chart: `points` is an SVG `points` attribute (numbers only).
#[derive(Clone, Debug)]
pub struct Series {
    pub class: &'static str,
    pub label: &'static str,
    pub points: String,
}

/// A small time-series chart.
#[derive(Clone, Debug)]
pub struct Chart {
    pub title: &'static str,
    pub width: i32,
    pub height: i32,
    pub series: Vec<Series>,
    /// The top of the y axis, formatted.
    pub y_max: String,
    /// The time the x axis spans, formatted.
    pub span: String,
    pub samples: usize,
}

const CHART_W: i32 = 560;
const CHART_H: i32 = 140;
const PAD: i32 = 30;

/// A chart of both directions' lag in seconds or in revisions over `samples`.
pub fn lag_chart(samples: &[Sample], revisions: bool) -> Chart {
    let pick = |s: &Sample| -> (f64, f64) {
        if revisions {
            (
                s.global_to_zone_revisions as f64,
                s.zone_to_global_revisions as f64,
            )
        } else {
            (s.global_to_zone_seconds, s.zone_to_global_seconds)
        }
    };
    let max = samples
        .iter()
        .map(|s| {
            let (a, b) = pick(s);
            a.max(b)
        })
        .fold(0.0f64, f64::max);
    let y_top = if max <= 0.0 {
        1.0
    } else if revisions {
        max.ceil()
    } else {
        max * 1.1
    };
    let first = samples.first().map(|s| s.at);
    let last = samples.last().map(|s| s.at);
    let span = match (first, last) {
        (Some(a), Some(b)) => b.duration_since(a).unwrap_or_default(),
        _ => Default::default(),
    };
    let span_secs = span.as_secs_f64().max(1.0);
    let plot_w = f64::from(CHART_W - 2 * PAD);
    let plot_h = f64::from(CHART_H - 2 * PAD);
    let line = |second: bool| -> String {
        samples
            .iter()
            .map(|s| {
                let t = first
                    .and_then(|f| s.at.duration_since(f).ok())
                    .unwrap_or_default()
                    .as_secs_f64();
                let (a, b) = pick(s);
                let v = if second { b } else { a };
                let x = f64::from(PAD) + plot_w * (t / span_secs);
                let y = f64::from(PAD) + plot_h * (1.0 - (v / y_top).clamp(0.0, 1.0));
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    Chart {
        title: if revisions {
            "Lag (revisions)"
        } else {
            "Lag (seconds)"
        },
        width: CHART_W,
        height: CHART_H,
        series: vec![
            Series {
                class: "series-g2z",
                label: "global → zone",
                points: line(false),
            },
            Series {
                class: "series-z2g",
                label: "zone → global",
                points: line(true),
            },
        ],
        y_max: if revisions {
            format!("{y_top:.0}")
        } else {
            format!("{y_top:.1}s")
        },
        span: short_duration(span),
        samples: samples.len(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn zone(name: &str, health: Health) -> ZoneRow {
        ZoneRow {
            health,
            ..ZoneRow::unknown(name)
        }
    }

    #[test]
    fn zones_sit_side_by_side_under_the_global_with_edges_coloured_by_status() {
        let zones = [zone("a", Health::Online), zone("b", Health::Offline)];
        let t = topology(
            Some(("global".into(), Health::Online, String::new())),
            &zones,
            &[],
            &[],
            "/gui",
            true,
        );
        let boxes: Vec<&Node> = t.nodes.iter().filter(|n| n.kind == "zone").collect();
        assert_eq!(boxes.len(), 2);
        assert!(boxes[0].x + boxes[0].w < boxes[1].x, "no overlap");
        assert_eq!(boxes[1].href, "/gui/zones/b");
        let health: Vec<Health> = t.edges.iter().map(|e| e.health).collect();
        assert_eq!(health, [Health::Online, Health::Offline]);
        assert!(t.nodes.iter().all(|n| n.x >= 0 && n.x + n.w <= t.width));
    }

    #[test]
    fn a_chart_scales_its_points_into_the_plot() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let samples = [
            Sample {
                at: t0,
                global_to_zone_seconds: 0.0,
                global_to_zone_revisions: 0,
                zone_to_global_seconds: 0.0,
                zone_to_global_revisions: 0,
            },
            Sample {
                at: t0 + Duration::from_secs(10),
                global_to_zone_seconds: 2.0,
                global_to_zone_revisions: 4,
                zone_to_global_seconds: 0.5,
                zone_to_global_revisions: 1,
            },
        ];
        let c = lag_chart(&samples, true);
        assert_eq!(c.y_max, "4");
        assert_eq!(c.series[0].points, "30.0,110.0 530.0,30.0");
        assert_eq!(c.span, "10s");
        let empty = lag_chart(&[], false);
        assert_eq!(empty.samples, 0);
        assert!(empty.series.iter().all(|s| s.points.is_empty()));
    }
}

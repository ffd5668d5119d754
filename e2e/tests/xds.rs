//! The ADS server of a real standalone `kuma-zone`, driven by a test ADS client (a tonic
//! client playing Envoy, no real Envoy: it must send a NACK on purpose):
//!
//! * a dataplane token issued on the zone's admin port (`POST /tokens/dataplane` on
//!   `adminServer.local.port`, 127.0.0.1);
//! * the stream's token checks: none is `Unauthenticated` ("dataplane token is required"), a
//!   token for another proxy is `PermissionDenied`;
//! * a NACK shows up in the DataplaneInsight read back through the REST API (`lastNack`
//!   with Envoy's reason, `responsesRejected`), the proxy counts as online in the mesh
//!   insight while its stream is open, and offline (subscription closed) after it ends.
//!
//! * with `dpServer.authn.dpProxy.type: none`, a stream needs no token;
//! * an inline Dataplane (`dataplaneResource` in `POST /bootstrap`) is deleted
//!   `xdsServer.dataplaneDeregistrationDelay` after its ADS stream closed, and registered again
//!   by its next stream (node metadata `dataplane.resource`); a kumactl-applied one stays.
//!
//! Build the binaries first: `cargo build -p zone -p ctl`.

mod support;

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use serde_json::Value;
use support::{Federation, eventually, free_port};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming};

const ZONE: &str = "zone-1";
const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const REASON: &str = "e2e test rejects this cluster on purpose";
const DEADLINE: Duration = Duration::from_secs(30);

/// `POST /tokens/dataplane` on the admin port: (status, body).
async fn issue_token(admin_port: u16, body: Value) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{admin_port}/tokens/dataplane"))
        .json(&body)
        .send()
        .await
        .expect("POST /tokens/dataplane on the admin port");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// One ADS stream to `xds_port` with `token` as `authorization` metadata.
struct AdsStream {
    tx: mpsc::Sender<DiscoveryRequest>,
    responses: Streaming<DiscoveryResponse>,
}

async fn open_stream(
    xds_port: u16,
    token: Option<&str>,
    node_id: &str,
) -> Result<AdsStream, tonic::Status> {
    open_stream_with(xds_port, token, node_id, None).await
}

async fn open_stream_with(
    xds_port: u16,
    token: Option<&str>,
    node_id: &str,
    inline: Option<&str>,
) -> Result<AdsStream, tonic::Status> {
    use envoy_types::pb::google::protobuf::value::Kind;
    use envoy_types::pb::google::protobuf::{Struct, Value as ProtoValue};
    let metadata = inline.map(|json| Struct {
        fields: [(
            "dataplane.resource".to_owned(),
            ProtoValue {
                kind: Some(Kind::StringValue(json.to_owned())),
            },
        )]
        .into_iter()
        .collect(),
    });
    let mut client =
        AggregatedDiscoveryServiceClient::connect(format!("http://127.0.0.1:{xds_port}"))
            .await
            .expect("dial the xDS server");
    let (tx, rx) = mpsc::channel(8);
    tx.send(DiscoveryRequest {
        node: Some(Node {
            id: node_id.to_owned(),
            cluster: "web".to_owned(),
            metadata,
            ..Default::default()
        }),
        type_url: CLUSTER.to_owned(),
        ..Default::default()
    })
    .await
    .expect("queue the first request");
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ASCII token"),
        );
    }
    let responses = client
        .stream_aggregated_resources(request)
        .await?
        .into_inner();
    Ok(AdsStream { tx, responses })
}

/// The first message of a stream: a response, or the status that refused the stream.
async fn first_message(stream: &mut AdsStream) -> Result<DiscoveryResponse, tonic::Status> {
    match tokio::time::timeout(DEADLINE, stream.responses.message()).await {
        Ok(Ok(Some(response))) => Ok(response),
        Ok(Ok(None)) => Err(tonic::Status::unknown("stream ended without a response")),
        Ok(Err(status)) => Err(status),
        Err(_) => panic!("no answer on the ADS stream within {DEADLINE:?}"),
    }
}

/// Opens a stream and returns the status it was refused with.
async fn refused(xds_port: u16, token: Option<&str>, node_id: &str) -> tonic::Status {
    match open_stream(xds_port, token, node_id).await {
        Err(status) => status,
        Ok(mut stream) => match first_message(&mut stream).await {
            Err(status) => status,
            Ok(response) => panic!("stream for {node_id} was served: {response:?}"),
        },
    }
}

/// A counter at `pointer`; proto3 JSON writes uint64 as a string.
fn u64_at(value: &Value, pointer: &str) -> u64 {
    match value.pointer(pointer) {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(v) => v.as_u64().unwrap_or(0),
        None => 0,
    }
}

#[tokio::test]
async fn e2e_ads_stream_auth_nack_in_insight_and_online_status() {
    let xds_port = free_port();
    let admin_port = free_port();
    let zone = Federation::start_standalone(
        ZONE,
        vec![
            ("KUMA_XDS_SERVER_GRPC_PORT".into(), xds_port.to_string()),
            (
                "KUMA_ADMIN_SERVER_LOCAL_PORT".into(),
                admin_port.to_string(),
            ),
            // Counters alone would wait this long; NACKs and disconnects must not.
            (
                "KUMA_XDS_SERVER_DATAPLANE_STATUS_FLUSH_INTERVAL".into(),
                "1h".into(),
            ),
        ],
    )
    .await;
    zone.apply(
        ZONE,
        "type: Dataplane
mesh: default
name: web-1
networking:
  address: 127.0.0.1
  inbound:
    - port: 20001
      servicePort: 20002
      tags:
        kuma.io/service: web
",
    );

    // Tokens from the admin port.
    let (status, token) = issue_token(
        admin_port,
        serde_json::json!({"name": "web-1", "mesh": "default", "validFor": "1h"}),
    )
    .await;
    assert_eq!(status, 200, "POST /tokens/dataplane: {token}");
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");
    let (status, other) = issue_token(
        admin_port,
        serde_json::json!({"name": "web-2", "mesh": "default", "type": "dataplane"}),
    )
    .await;
    assert_eq!(status, 200, "POST /tokens/dataplane: {other}");
    let (status, body) = issue_token(admin_port, serde_json::json!({"name": "web-1"})).await;
    assert_eq!(status, 400, "a token without a mesh: {body}");

    // Refused streams.
    let status = refused(xds_port, None, "default.web-1").await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("dataplane token is required"),
        "{status:?}"
    );
    let status = refused(xds_port, Some(&other), "default.web-1").await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = refused(xds_port, Some("not.a.token"), "default.web-1").await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // A served stream; its first cluster response is NACKed.
    let mut stream = open_stream(xds_port, Some(&token), "default.web-1")
        .await
        .expect("the stream with the right token is accepted");
    let response = first_message(&mut stream)
        .await
        .expect("a cluster response");
    assert_eq!(response.type_url, CLUSTER);
    stream
        .tx
        .send(DiscoveryRequest {
            type_url: CLUSTER.to_owned(),
            response_nonce: response.nonce.clone(),
            error_detail: Some(RpcStatus {
                code: 13,
                message: REASON.to_owned(),
                details: Vec::new(),
            }),
            ..Default::default()
        })
        .await
        .expect("send the NACK");

    let insight = eventually(DEADLINE, "the NACK in the DataplaneInsight", async || {
        let overview = zone
            .get(ZONE, "/meshes/default/dataplanes+insights/web-1")
            .await?
            .ok_or("no overview")?;
        let insight = overview
            .get("dataplaneInsight")
            .cloned()
            .ok_or_else(|| format!("no insight: {overview}"))?;
        let reason = insight
            .pointer("/lastNack/reason")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if reason == REASON {
            Ok(insight)
        } else {
            Err(format!("{insight}"))
        }
    })
    .await;
    assert_eq!(
        insight.pointer("/lastNack/typeUrl").and_then(Value::as_str),
        Some(CLUSTER),
        "{insight}"
    );
    let subscription = insight
        .pointer("/subscriptions/0")
        .cloned()
        .unwrap_or_default();
    assert!(subscription.get("connectTime").is_some(), "{insight}");
    assert!(subscription.get("disconnectTime").is_none(), "{insight}");
    assert!(
        !subscription["controlPlaneInstanceId"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{insight}"
    );
    assert_eq!(
        u64_at(&subscription, "/status/total/responsesRejected"),
        1,
        "{insight}"
    );
    assert_eq!(
        u64_at(&subscription, "/status/cds/responsesRejected"),
        1,
        "{insight}"
    );
    assert!(
        u64_at(&subscription, "/status/cds/responsesSent") >= 1,
        "{insight}"
    );

    let dataplanes = |insight: Value| insight.get("dataplanes").cloned().unwrap_or_default();
    eventually(DEADLINE, "web-1 online in the mesh insight", async || {
        let mesh = zone
            .get(ZONE, "/mesh-insights/default")
            .await?
            .ok_or("no mesh insight")?;
        let counts = dataplanes(mesh);
        if u64_at(&counts, "/online") == 1 {
            Ok(())
        } else {
            Err(format!("{counts}"))
        }
    })
    .await;

    // The proxy leaves: its subscription closes and it counts as offline.
    drop(stream);
    eventually(
        DEADLINE,
        "web-1 offline after its stream ended",
        async || {
            let overview = zone
                .get(ZONE, "/meshes/default/dataplanes+insights/web-1")
                .await?
                .ok_or("no overview")?;
            let closed = overview
                .pointer("/dataplaneInsight/subscriptions/0/disconnectTime")
                .is_some();
            let mesh = zone
                .get(ZONE, "/mesh-insights/default")
                .await?
                .ok_or("no mesh insight")?;
            let counts = dataplanes(mesh);
            if closed && u64_at(&counts, "/offline") == 1 && u64_at(&counts, "/online") == 0 {
                Ok(())
            } else {
                Err(format!("{overview} {counts}"))
            }
        },
    )
    .await;
}

#[tokio::test]
async fn e2e_inline_dataplane_is_deregistered_after_its_stream_and_registered_again() {
    let xds_port = free_port();
    let admin_port = free_port();
    let bootstrap_port = free_port();
    let zone = Federation::start_standalone(
        ZONE,
        vec![
            ("KUMA_XDS_SERVER_GRPC_PORT".into(), xds_port.to_string()),
            (
                "KUMA_ADMIN_SERVER_LOCAL_PORT".into(),
                admin_port.to_string(),
            ),
            (
                "KUMA_BOOTSTRAP_SERVER_PORT".into(),
                bootstrap_port.to_string(),
            ),
            (
                "KUMA_XDS_DATAPLANE_DEREGISTRATION_DELAY".into(),
                "1s".into(),
            ),
        ],
    )
    .await;
    let dataplane = |name: &str, port: u16| {
        format!(
            "type: Dataplane
mesh: default
name: {name}
networking:
  address: 127.0.0.1
  inbound:
    - port: {port}
      servicePort: {}
      tags:
        kuma.io/service: {name}
",
            port + 1
        )
    };
    zone.apply(ZONE, &dataplane("applied", 21001));
    let token_for = async |name: &str| {
        let (status, token) = issue_token(
            admin_port,
            serde_json::json!({"name": name, "mesh": "default"}),
        )
        .await;
        assert_eq!(status, 200, "{token}");
        token
    };
    let inline_token = token_for("inline").await;
    let applied_token = token_for("applied").await;

    // kuma-dp's bootstrap request with the Dataplane inline.
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{bootstrap_port}/bootstrap"))
        .json(&serde_json::json!({
            "mesh": "default",
            "name": "inline",
            "dataplaneToken": inline_token,
            "dataplaneResource": dataplane("inline", 21011),
        }))
        .send()
        .await
        .expect("POST /bootstrap");
    assert_eq!(response.status().as_u16(), 200);
    let bootstrap: Value = response.json().await.expect("bootstrap JSON");
    let inline_json = bootstrap
        .pointer("/node/metadata/dataplane.resource")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no dataplane.resource node metadata: {bootstrap}"))
        .to_owned();
    let exists = async |name: &str| -> Result<bool, String> {
        Ok(zone
            .get(ZONE, &format!("/meshes/default/dataplanes/{name}"))
            .await?
            .is_some())
    };
    assert!(
        exists("inline").await.unwrap_or(false),
        "bootstrap stored it"
    );

    // Both proxies connect, then leave.
    let mut inline = open_stream_with(
        xds_port,
        Some(&inline_token),
        "default.inline",
        Some(&inline_json),
    )
    .await
    .expect("inline stream");
    first_message(&mut inline).await.expect("a response");
    let mut applied = open_stream(xds_port, Some(&applied_token), "default.applied")
        .await
        .expect("applied stream");
    first_message(&mut applied).await.expect("a response");
    drop(inline);
    drop(applied);
    eventually(DEADLINE, "the inline dataplane deregistered", async || {
        if exists("inline").await? {
            Err("still there".to_owned())
        } else {
            Ok(())
        }
    })
    .await;
    assert!(
        exists("applied").await.unwrap_or(false),
        "a kumactl-applied dataplane was deleted"
    );

    // The proxy comes back: its stream registers it again.
    let mut again = open_stream_with(
        xds_port,
        Some(&inline_token),
        "default.inline",
        Some(&inline_json),
    )
    .await
    .expect("inline stream again");
    first_message(&mut again)
        .await
        .expect("a response once registered again");
    assert!(exists("inline").await.unwrap_or(false));
}

#[tokio::test]
async fn e2e_with_dp_proxy_auth_none_a_stream_needs_no_token() {
    let xds_port = free_port();
    let zone = Federation::start_standalone(
        ZONE,
        vec![
            ("KUMA_XDS_SERVER_GRPC_PORT".into(), xds_port.to_string()),
            ("KUMA_DP_SERVER_AUTHN_DP_PROXY_TYPE".into(), "none".into()),
        ],
    )
    .await;
    zone.apply(
        ZONE,
        "type: Dataplane
mesh: default
name: web-1
networking:
  address: 127.0.0.1
  inbound:
    - port: 20001
      servicePort: 20002
      tags:
        kuma.io/service: web
",
    );
    let mut stream = open_stream(xds_port, None, "default.web-1")
        .await
        .expect("a stream without a token is accepted");
    let response = first_message(&mut stream)
        .await
        .expect("served without a token");
    assert_eq!(response.type_url, CLUSTER);
}

#[tokio::test]
async fn e2e_a_zone_that_stops_closes_its_proxies_subscriptions() {
    let xds_port = free_port();
    let admin_port = free_port();
    let mut zone = Federation::start_standalone(
        ZONE,
        vec![
            ("KUMA_XDS_SERVER_GRPC_PORT".into(), xds_port.to_string()),
            (
                "KUMA_ADMIN_SERVER_LOCAL_PORT".into(),
                admin_port.to_string(),
            ),
        ],
    )
    .await;
    zone.apply(
        ZONE,
        "type: Dataplane
mesh: default
name: web-1
networking:
  address: 127.0.0.1
  inbound:
    - port: 20001
      servicePort: 20002
      tags:
        kuma.io/service: web
",
    );
    let (status, token) = issue_token(
        admin_port,
        serde_json::json!({"name": "web-1", "mesh": "default"}),
    )
    .await;
    assert_eq!(status, 200, "{token}");
    let mut stream = open_stream(xds_port, Some(&token), "default.web-1")
        .await
        .expect("stream");
    first_message(&mut stream).await.expect("a response");
    let open = async |zone: &Federation| -> Result<Option<bool>, String> {
        let overview = zone
            .get(ZONE, "/meshes/default/dataplanes+insights/web-1")
            .await?
            .ok_or("no overview")?;
        Ok(overview
            .pointer("/dataplaneInsight/subscriptions/0")
            .map(|s| s.get("disconnectTime").is_none()))
    };
    eventually(DEADLINE, "the subscription written", async || {
        match open(&zone).await? {
            Some(true) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // A graceful stop with the stream still open: it exits and closes the subscription.
    let status = zone.terminate(ZONE, DEADLINE);
    assert!(status.success(), "kuma-zone exited with {status}");
    drop(stream);
    zone.restart(ZONE).await;
    assert_eq!(
        open(&zone).await.expect("the overview"),
        Some(false),
        "the stopped zone left the subscription open"
    );
}

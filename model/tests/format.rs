//! The kumactl format, both ways, as a user sees it.

use model::format::{from_json_value, parse_documents, to_json_value, to_yaml};
use model::{ResourceType, Spec};
use serde_json::json;
use time::macros::datetime;

const TWO_DOCS: &str = r#"
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
    - name: ca-1
      type: builtin
      conf:
        caCert:
          RSAbits: 2048
---
type: TrafficRoute
mesh: default
name: route-all
labels:
  team: payments
sources:
  - match:
      kuma.io/service: "*"
destinations:
  - match:
      kuma.io/service: "*"
conf:
  loadBalancer:
    roundRobin: {}
  destination:
    kuma.io/service: "*"
---
"#;

#[test]
fn multi_document_yaml() {
    let resources = parse_documents(TWO_DOCS).expect("valid input");
    assert_eq!(resources.len(), 2, "the trailing empty document is skipped");
    assert_eq!(resources[0].kind(), ResourceType::Mesh);
    assert_eq!(resources[0].meta.mesh, "", "a Mesh has no mesh");
    assert_eq!(resources[1].kind(), ResourceType::TrafficRoute);
    assert_eq!(
        resources[1].meta.labels.get("team").map(String::as_str),
        Some("payments")
    );
    let Spec::TrafficRoute(route) = &resources[1].spec else {
        panic!("a TrafficRoute")
    };
    let conf = route.conf.as_ref().expect("conf");
    assert!(conf.load_balancer.is_some());
    assert_eq!(
        conf.destination.get("kuma.io/service").map(String::as_str),
        Some("*")
    );
}

#[test]
fn json_output_is_kuma_shaped() {
    let mut resources = parse_documents(TWO_DOCS).expect("valid input");
    let mut route = resources.remove(1);
    route.meta.creation_time = datetime!(2018-07-17 16:05:36.995 UTC);
    route.meta.modification_time = datetime!(2018-07-17 16:05:36 UTC);
    let value = to_json_value(&route);
    let keys: Vec<&str> = value
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "type",
            "mesh",
            "name",
            "creationTime",
            "modificationTime",
            "labels",
            "sources",
            "destinations",
            "conf"
        ]
    );
    assert_eq!(value["creationTime"], "2018-07-17T16:05:36.995Z");
    assert_eq!(value["modificationTime"], "2018-07-17T16:05:36Z");
    assert_eq!(
        value["conf"]["loadBalancer"],
        json!({"roundRobin": {}}),
        "camelCase names"
    );
    // And back: the output of kumactl get is valid input of kumactl apply.
    let again = from_json_value(&value).expect("round trip");
    assert_eq!(again.spec, route.spec);
    assert_eq!(again.meta.labels, route.meta.labels);
}

#[test]
fn map_keys_come_out_sorted() {
    let tags: Vec<String> = (0..20)
        .map(|i| format!("\"tag-{:02}\": \"v\"", 19 - i))
        .collect();
    let input = format!(
        r#"{{"type": "Dataplane", "mesh": "default", "name": "dp",
            "networking": {{"address": "10.0.0.1", "inbound": [{{"port": 80, "tags": {{"kuma.io/service": "web", {}}}}}]}}}}"#,
        tags.join(", ")
    );
    let dp = from_json_value(&serde_json::from_str(&input).expect("json")).expect("dataplane");
    let out = to_json_value(&dp);
    let keys: Vec<&str> = out["networking"]["inbound"][0]["tags"]
        .as_object()
        .expect("tags")
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    let mesh = parse_documents(TWO_DOCS).expect("valid")[0].clone();
    let conf = to_json_value(&mesh)["mtls"]["backends"][0]["conf"].to_string();
    assert_eq!(conf, r#"{"caCert":{"RSAbits":2048}}"#);
}

#[test]
fn snake_case_input_is_accepted() {
    let value = json!({
        "type": "Dataplane", "mesh": "default", "name": "dp-1",
        "networking": {"address": "10.0.0.1", "transparent_proxying": {"redirect_port_inbound": 15006},
                       "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}]}
    });
    let dp = from_json_value(&value).expect("snake_case accepted");
    let out = to_json_value(&dp);
    assert_eq!(
        out["networking"]["transparentProxying"]["redirectPortInbound"],
        15006
    );
}

#[test]
fn secret_data_is_base64() {
    let value = json!({"type": "Secret", "mesh": "default", "name": "sec-1", "data": "dGVzdAo="});
    let secret = from_json_value(&value).expect("secret");
    let Spec::Secret(s) = &secret.spec else {
        panic!("a Secret")
    };
    assert_eq!(
        s.data.as_ref().map(|d| d.value.as_slice()),
        Some(&b"test\n"[..])
    );
    assert_eq!(to_json_value(&secret)["data"], "dGVzdAo=");
}

#[test]
fn errors_name_the_document_resource_and_field() {
    let err = parse_documents(
        "type: Mesh\nname: a\n---\ntype: TrafficRoute\nmesh: default\nname: r\nconff: {}\n",
    )
    .expect_err("unknown field");
    let text = err.to_string();
    assert!(
        text.starts_with("document 2: TrafficRoute \"r\": spec:"),
        "{text}"
    );
    assert!(text.contains("conff"), "{text}");

    let err = parse_documents("name: a\n").expect_err("no type");
    assert_eq!(err.to_string(), "document 1: type: cannot be empty");

    let err = parse_documents("type: Meshh\nname: a\n").expect_err("bad type");
    assert_eq!(
        err.to_string(),
        "document 1: type: unknown resource type \"Meshh\""
    );

    let err = parse_documents(
        "type: Dataplane\nmesh: default\nname: a\nnetworking:\n  inbound:\n    - port: abc\n",
    )
    .expect_err("bad value");
    assert!(err.to_string().contains("Dataplane \"a\": spec:"), "{err}");

    let err = parse_documents("type: Mesh\nname: [unclosed\n").expect_err("bad yaml");
    assert!(
        err.to_string()
            .starts_with("document 1: (document): not valid YAML or JSON"),
        "{err}"
    );
}

#[test]
fn yaml_output_parses_back() {
    let resources = parse_documents(TWO_DOCS).expect("valid input");
    for resource in &resources {
        let yaml = to_yaml(resource);
        let back = parse_documents(&yaml).expect("own output parses");
        assert_eq!(back[0].spec, resource.spec, "{yaml}");
    }
}

#[test]
fn every_registered_type_has_a_spec_message() {
    for kind in ResourceType::ALL {
        let spec = Spec::default_for(*kind);
        assert_eq!(spec.kind(), *kind);
        assert_eq!(
            spec.to_json(),
            json!({}),
            "{kind}: empty spec renders as {{}}"
        );
        let back = Spec::from_json(*kind, &json!({}), true).expect("empty spec parses");
        assert_eq!(back, spec);
        let decoded = Spec::decode_proto(*kind, &spec.encode_proto()).expect("proto round trip");
        assert_eq!(decoded, spec);
    }
}

#[test]
fn examples_in_the_docs_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("docs/examples exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).expect("read example");
            let resources =
                parse_documents(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for resource in &resources {
                model::validate::validate(resource)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            checked += resources.len();
        }
    }
    assert!(checked >= 2, "the examples hold resources");
}

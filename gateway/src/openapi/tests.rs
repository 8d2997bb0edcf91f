//! Tests of the OpenAPI document.

#![allow(clippy::unwrap_used)]
use super::*;

fn weft() -> Router {
    Router::from_pool(weft_proto::descriptor_pool()).unwrap()
}

/// A router over `source` (as `t/v1/t.proto`, with the weft proto imports).
fn router_of(source: &str) -> Router {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("t/v1")).unwrap();
    std::fs::write(dir.path().join("t/v1/t.proto"), source).unwrap();
    let protos = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let mut compiler = protox::Compiler::new([dir.path().to_owned(), protos]).unwrap();
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(["t/v1/t.proto"]).unwrap();
    let set = compiler.encode_file_descriptor_set();
    Router::from_pool(&prost_reflect::DescriptorPool::decode(set.as_slice()).unwrap()).unwrap()
}

const TREE: &str = r#"
    syntax = "proto3";
    package t.v1;
    import "google/api/annotations.proto";
    import "google/protobuf/any.proto";
    import "google/protobuf/duration.proto";
    import "google/protobuf/empty.proto";
    import "google/protobuf/struct.proto";
    import "google/protobuf/timestamp.proto";
    import "google/protobuf/wrappers.proto";
    service Tree {
      // Reads a node.
      rpc GetNode(GetNodeRequest) returns (Node) {
        option (google.api.http) = {
          get: "/v1/{name=trees/*}/node"
          additional_bindings {get: "/v1/trees/main/node"}
          additional_bindings {get: "/v1/nodes/{node.name}"}
        };
      }
      rpc Children(Node) returns (stream Node) {
        option (google.api.http) = {post: "/v1/nodes:children" body: "*" response_body: "parent"};
      }
    }
    // A node of a tree.
    message Node {
      string name = 1;
      repeated Node children = 2;
      Node parent = 3;
      google.protobuf.Struct attrs = 4;
      google.protobuf.Value v = 5;
      google.protobuf.Any any = 6;
      google.protobuf.Duration ttl = 7;
      google.protobuf.UInt64Value size = 8;
      fixed64 id = 9;
      bytes blob = 10;
      map<int64, Node> index = 11;
      google.protobuf.Empty nothing = 12;
    }
    message GetNodeRequest {
      string name = 1;
      Filter filter = 2;
      Node node = 3;
      repeated int32 ids = 4;
      map<string, string> labels = 5;
      repeated Deep deeps = 6;
    }
    message Filter {
      Filter inner = 1;
      string text = 2;
      google.protobuf.Timestamp after = 3;
      repeated google.protobuf.Duration ages = 4;
      Deep deep = 5;
    }
    message Deep { Deeper deeper = 1; string d = 2; }
    message Deeper { string x = 1; }
"#;

fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(o) => {
            out.extend(o.get("$ref").and_then(Value::as_str));
            o.values().for_each(|v| refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

fn param<'a>(op: &'a Value, name: &str) -> &'a Value {
    let params = op["parameters"].as_array().unwrap();
    params.iter().find(|p| p["name"] == name).unwrap()
}

/// The names of an operation's parameters, space-separated.
fn names(op: &Value) -> String {
    let params = op["parameters"].as_array().unwrap().iter();
    params
        .map(|p| p["name"].as_str().unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

fn body(op: &Value) -> &Value {
    &op["requestBody"]["content"]["application/json"]["schema"]
}

#[test]
fn one_operation_per_route_with_unique_ids() {
    let doc = document(&weft());
    let routes = weft_proto::routes::route_table(weft_proto::descriptor_pool()).unwrap();
    let mut ids = HashSet::new();
    for r in &routes {
        let router = weft();
        let binding = router
            .bindings()
            .iter()
            .find(|b| b.template.as_str() == r.path && b.method.as_str() == r.http_method)
            .unwrap();
        let path = binding.openapi_path();
        let op = &doc["paths"][&path][r.http_method.to_ascii_lowercase()];
        assert_eq!(op["summary"], r.rpc.rsplit('.').next().unwrap(), "{r}");
        assert!(ids.insert(op["operationId"].to_string()), "{r}");
    }
    let items = doc["paths"].as_object().unwrap().values();
    let ops: usize = items.map(|i| i.as_object().unwrap().len()).sum();
    assert_eq!(ops, routes.len());
}

#[test]
fn every_ref_resolves() {
    for doc in [document(&weft()), document(&router_of(TREE))] {
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            assert!(doc["components"]["schemas"][name].is_object(), "{r}");
            assert!(!name.starts_with("google.protobuf."), "{r} is inlined");
        }
    }
}

#[test]
fn routes_are_described_as_transcode_reads_them() {
    let doc = document(&weft());
    let paths = &doc["paths"];
    let signup = &paths["/v1/users"]["post"];
    assert_eq!(signup["security"], json!([]));
    let signup_ref = "#/components/schemas/weft.user.v1.SignUpRequest";
    assert_eq!(body(signup)["$ref"], signup_ref);
    assert!(
        paths["/v1/orders/{order_id}"]["get"]
            .get("security")
            .is_none()
    );

    let list = &paths["/v1/users/{user_id}/orders"]["get"];
    assert_eq!(names(list), "user_id page_size page_token");
    assert_eq!(param(list, "user_id")["in"], "path");
    assert_eq!(param(list, "page_size")["schema"]["type"], "integer");
    assert_eq!(param(list, "page_token")["in"], "query");

    let update = &paths["/v1/users/{user_id}"]["patch"];
    assert_eq!(
        body(update)["$ref"],
        "#/components/schemas/weft.user.v1.User"
    );
    assert_eq!(names(update), "user_id update_mask");
    assert_eq!(param(update, "update_mask")["schema"]["type"], "string");

    assert_eq!(
        names(&paths["/v1/orders/{order_id}:pay"]["post"]),
        "order_id"
    );
    assert!(
        paths["/v1/analytics/metrics"]["get"]
            .get("requestBody")
            .is_none()
    );
    let stream = &paths["/v1/analytics/metrics:stream"]["get"]["responses"]["200"];
    assert_eq!(
        stream["content"]["text/event-stream"]["schema"]["type"],
        "string"
    );
    assert!(stream["content"]["application/x-ndjson"].is_object());
}

#[test]
fn schemas_follow_proto3_json() {
    let doc = document(&weft());
    let schemas = &doc["components"]["schemas"];
    let login = &schemas["weft.user.v1.LoginResponse"]["properties"];
    assert_eq!(login["expiresIn"]["type"], "string");
    let money = &schemas["weft.common.v1.Money"];
    assert_eq!(money["properties"]["units"]["type"], "string");
    assert_eq!(money["properties"]["nanos"]["type"], "integer");
    assert_eq!(money["additionalProperties"], false);
    let user = &schemas["weft.user.v1.User"]["properties"];
    assert_eq!(user["createTime"]["format"], "date-time");
    assert_eq!(user["metadata"]["additionalProperties"]["type"], "string");
    assert_eq!(user["roles"]["items"]["type"], "string");
    assert_eq!(user["source"]["enum"][1], "SIGNUP_SOURCE_WEB");
    let latency = &schemas["weft.analytics.v1.LatencySummary"]["properties"];
    assert_eq!(latency["p50Ms"]["anyOf"][1]["enum"][0], "NaN");
    assert_eq!(
        schemas["google.rpc.Status"]["properties"]["code"]["format"],
        "int32"
    );
}

#[test]
fn nested_query_bindings_and_well_known_types() {
    let doc = document(&router_of(TREE));
    let get = &doc["paths"]["/v1/{name}/node"]["get"];
    assert_eq!(get["operationId"], "t_v1_Tree_GetNode");
    assert_eq!(get["description"], "Reads a node.");
    let want = "name filter.text filter.after filter.ages filter.deep.d node.name node.ttl \
                node.size node.id node.blob ids";
    assert_eq!(names(get), want);
    assert!(
        param(get, "name")["description"]
            .to_string()
            .contains("`trees/*`")
    );
    assert_eq!(param(get, "ids")["explode"], true);
    assert_eq!(
        param(get, "filter.ages")["schema"]["items"]["pattern"],
        "^-?[0-9]+(\\.[0-9]{1,9})?s$"
    );
    let extra = &doc["paths"]["/v1/trees/main/node"]["get"];
    assert_eq!(extra["operationId"], "t_v1_Tree_GetNode_2");
    let by_node = &doc["paths"]["/v1/nodes/{node_name}"]["get"];
    assert_eq!(by_node["operationId"], "t_v1_Tree_GetNode_3");
    let want = "node_name name filter.text filter.after filter.ages filter.deep.d node.ttl";
    assert!(names(by_node).starts_with(want), "{}", names(by_node));

    let node = &doc["components"]["schemas"]["t.v1.Node"];
    assert_eq!(node["description"], "A node of a tree.");
    let (node, me) = (&node["properties"], "#/components/schemas/t.v1.Node");
    assert_eq!(node["children"]["items"]["$ref"], me);
    assert_eq!(node["index"]["additionalProperties"]["$ref"], me);
    assert_eq!(node["attrs"]["type"], "object");
    assert_eq!(node["v"], json!({}));
    assert_eq!(node["any"]["required"], json!(["@type"]));
    assert_eq!(node["size"]["pattern"], "^[0-9]+$");
    assert_eq!(node["blob"]["contentEncoding"], "base64");
    assert_eq!(node["nothing"]["additionalProperties"], false);
    let stream = &doc["paths"]["/v1/nodes:children"]["post"]["responses"]["200"]["content"];
    assert_eq!(
        stream["text/event-stream"]["x-itemSchema"]["anyOf"][1]["type"],
        "null"
    );
}

/// A value the schema of a path or query parameter accepts.
fn sample(schema: &Value) -> &str {
    let s = if schema["type"] == "array" {
        &schema["items"]
    } else {
        schema
    };
    if let Some(first) = s["enum"].get(0) {
        return first.as_str().unwrap();
    }
    match (
        s["type"].as_str(),
        s["format"].as_str(),
        s["pattern"].as_str(),
    ) {
        _ if s.get("contentEncoding").is_some() => "AA==",
        (Some("string"), Some("date-time"), _) => "2024-01-01T00:00:00Z",
        (Some("string"), _, Some(p)) if p.ends_with("s$") => "1.5s",
        (Some("string"), _, Some(_)) | (Some("integer"), ..) => "7",
        (Some("boolean"), ..) => "true",
        (None, ..) => "1.5",
        _ => "x",
    }
}

/// Every parameter the document lists, all at once, is one transcode takes.
#[test]
fn transcode_accepts_every_documented_parameter() {
    for router in [weft(), router_of(TREE)] {
        let doc = document(&router);
        for b in router.bindings() {
            let op = &doc["paths"][b.openapi_path()][b.method.as_str().to_ascii_lowercase()];
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let (path, query): (Vec<_>, Vec<_>) = params.iter().partition(|p| p["in"] == "path");
            let vars = b.template.variables().iter().zip(&path);
            let vars = vars.map(|(v, p)| (v.field_path.clone(), sample(&p["schema"]).to_owned()));
            let query = query
                .iter()
                .map(|p| format!("{}={}", p["name"].as_str().unwrap(), sample(&p["schema"])));
            let query = query.collect::<Vec<_>>().join("&");
            let result = crate::transcode::request_message(b, &vars.collect(), Some(&query), b"");
            assert!(
                result.is_ok(),
                "{} {}: {:?}",
                b.method,
                b.template,
                result.err()
            );
        }
    }
}

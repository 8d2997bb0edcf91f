//! Envoy's own schema for `envoy/envoy.yaml`. `scripts/check-envoy` builds
//! `tools/envoy-check` (Go, with go-control-plane's generated Envoy v3 API, pinned to
//! the Envoy release that docker-compose.yml and deploy/k8s run) and checks the file
//! strictly (every field and enum value must exist, every typed_config must resolve)
//! and against every protoc-gen-validate rule, inside typed_configs too. The tests in
//! `tests/deploy/` check what the file means; these check that Envoy would read it.
//!
//! Runs the real checker on the file as committed, and on copies with one field
//! misspelt, one typed_config type misnamed and values that break validation rules,
//! each of which must fail naming the place. Needs Go (and, on the first run, the Go
//! module proxy): when Go is missing these tests fail, they never skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use weft_testkit::tools;

const ENVOY: &str = "envoy/envoy.yaml";
const GO_MOD: &str = "tools/envoy-check/go.mod";
const API_MODULE: &str = "github.com/envoyproxy/go-control-plane/envoy";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `scripts/check-envoy` on `file`; whether it passed, and its stdout + stderr.
fn check_envoy(file: &Path) -> (bool, String) {
    assert!(
        weft_testkit::find_tool("go").is_some(),
        "Go is not installed: scripts/check-envoy builds tools/envoy-check with it \
         (the version in {GO_MOD} or newer)"
    );
    tools::run(Command::new(root().join("scripts/check-envoy")).arg(file))
}

/// A copy of envoy.yaml in a temp dir with the first `from` replaced by `to`.
fn edited_copy(from: &str, to: &str) -> (tempfile::TempDir, PathBuf) {
    let text = std::fs::read_to_string(root().join(ENVOY)).unwrap();
    assert!(
        text.contains(from),
        "{ENVOY} no longer contains {from:?}: pick another edit for this test"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    (dir, path)
}

/// Checks a copy of envoy.yaml edited by `from` → `to`; it must fail, and its output
/// must contain every one of `expected`.
fn assert_fails(from: &str, to: &str, expected: &[&str]) {
    let (_dir, path) = edited_copy(from, to);
    let (ok, out) = check_envoy(&path);
    assert!(
        !ok,
        "the checker passed a copy with {from:?} → {to:?}:\n{out}"
    );
    for e in expected {
        assert!(
            out.contains(e),
            "the checker's output for {from:?} → {to:?} lacks {e:?}:\n{out}"
        );
    }
}

#[test]
fn envoy_yaml_passes_envoys_own_schema() {
    let (ok, out) = check_envoy(&root().join(ENVOY));
    assert!(ok, "{ENVOY} fails Envoy's schema:\n{out}");
    assert!(out.contains(": OK against Envoy API"), "{out}");
    // Every typed_config type in the file was resolved and validated, none skipped.
    let text = std::fs::read_to_string(root().join(ENVOY)).unwrap();
    let types: std::collections::BTreeSet<&str> = text
        .split("type.googleapis.com/")
        .skip(1)
        .map(|rest| rest.split_whitespace().next().unwrap())
        .collect();
    let expected = format!("typed configs ({} types)", types.len());
    assert!(out.contains(&expected), "expected {expected:?} in:\n{out}");
}

#[test]
fn a_misspelt_field_fails_naming_it() {
    assert_fails(
        "    - name: user\n      type: STRICT_DNS\n      connect_timeout: 2s\n",
        "    - name: user\n      type: STRICT_DNS\n      conect_timeout: 2s\n",
        &[
            "static_resources.clusters[0:user].conect_timeout: unknown field \"conect_timeout\"",
            "did you mean \"connect_timeout\"",
        ],
    );
}

#[test]
fn a_misspelt_field_inside_a_typed_config_fails_naming_it() {
    assert_fails(
        "stat_prefix: edge_rate_limit",
        "stat_prefx: edge_rate_limit",
        &["typed_config(LocalRateLimit).stat_prefx: unknown field \"stat_prefx\""],
    );
}

#[test]
fn a_value_breaking_a_validation_rule_fails_naming_it() {
    // Cluster.connect_timeout: (validate.rules).duration.gt = 0s.
    assert_fails(
        "connect_timeout: 1s",
        "connect_timeout: 0s",
        &[
            "static_resources.clusters[6:envoy_admin].connect_timeout: value must be greater than 0s",
        ],
    );
}

#[test]
fn a_value_breaking_a_validation_rule_inside_a_typed_config_fails_naming_it() {
    // Http2ProtocolOptions.max_concurrent_streams: (validate.rules).uint32 = {gte: 1,
    // lte: 2147483647}, inside the HttpConnectionManager typed_config, which the
    // Bootstrap's own validation does not look into. Both listeners share that
    // connection manager (&hcm), so both fail.
    let hcm = "filter_chains[0].filters[0:envoy.filters.network.http_connection_manager]\
               .typed_config(HttpConnectionManager)";
    let rule = "http2_protocol_options.max_concurrent_streams: \
                value must be inside range [1, 2147483647]";
    let https = format!("static_resources.listeners[0:https].{hcm}.{rule}");
    let http = format!("static_resources.listeners[1:http].{hcm}.{rule}");
    assert_fails(
        "max_concurrent_streams: 100",
        "max_concurrent_streams: 0",
        &[https.as_str(), http.as_str()],
    );
}

#[test]
fn an_unknown_typed_config_type_fails_naming_it() {
    assert_fails(
        "access_loggers.stream.v3.StdoutAccessLog",
        "access_loggers.stream.v3.StdOutAccessLog",
        &[
            "cannot resolve \"type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdOutAccessLog\"",
        ],
    );
}

/// The Envoy image tags in docker-compose.yml and deploy/k8s name the same Envoy minor
/// release as the go-control-plane API the checker is built with: a bump of one
/// without the other fails here (needs no Go).
#[test]
fn the_checkers_api_is_the_deployed_envoys() {
    let go_mod = std::fs::read_to_string(root().join(GO_MOD)).unwrap();
    let api = go_mod
        .lines()
        .find_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("require ").unwrap_or(l);
            l.strip_prefix(API_MODULE)?.trim().strip_prefix('v')
        })
        .unwrap_or_else(|| panic!("{GO_MOD} requires no {API_MODULE}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let minor = |version: &str| version.split('.').take(2).collect::<Vec<_>>().join(".");
    let api_minor = minor(&api);
    for file in ["docker-compose.yml", "deploy/k8s/envoy.yaml"] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let tags: Vec<&str> = text
            .split("envoyproxy/envoy:")
            .skip(1)
            .map(|rest| {
                rest.split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
                    .next()
                    .unwrap()
            })
            .collect();
        assert!(!tags.is_empty(), "{file} names no envoyproxy/envoy image");
        for tag in tags {
            // v1.35-latest, v1.35.3, ...
            let version = tag.trim_start_matches('v').split('-').next().unwrap();
            assert_eq!(
                minor(version),
                api_minor,
                "{file} runs envoyproxy/envoy:{tag}, but {GO_MOD} pins {API_MODULE} v{api}: \
                 move them together"
            );
        }
    }
}

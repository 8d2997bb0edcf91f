//! The deployment files against what they deploy. Envoy, Docker and Kubernetes cannot
//! run on the development machines, so this is what keeps `envoy/envoy.yaml`,
//! `docker-compose.yml` and `deploy/k8s/*.yaml` true: their routes against the protos
//! (every gRPC service and method, every REST binding), their ports against the
//! launcher's defaults, their command lines against the services' own clap
//! definitions, and the three files against each other.
//!
//! Envoy's route matching is simulated (first match wins, path/prefix plus header
//! matchers), so a route that is shadowed by an earlier one fails here as it would in
//! Envoy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::OnceLock;

use clap::{CommandFactory, Parser};
use serde_norway::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const COMPOSE: &str = "docker-compose.yml";
const ENVOY: &str = "envoy/envoy.yaml";
const K8S: &str = "deploy/k8s";
/// What Envoy sets to the client's address; the gateway must read it.
const CLIENT_IP_HEADER: &str = "x-envoy-external-address";

mod compose;
mod compose_model;
mod envoy_edge;
mod envoy_model;
mod envoy_routes;
mod kube;
mod truth;
mod yaml;

use compose_model::*;
use envoy_model::*;
use truth::*;
use yaml::*;

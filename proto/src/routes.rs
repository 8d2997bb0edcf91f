//! The REST route table: every `google.api.http` binding of every weft RPC, read from
//! the descriptor set. buf does not see changes to these options, so CI compares this
//! table with the committed baseline (`proto/baseline/routes.txt`).

use std::collections::BTreeSet;
use std::fmt;

use prost::Message as _;
use prost_reflect::{DescriptorPool, MethodDescriptor, Value};

use crate::google::api::{HttpRule, http_rule::Pattern};

/// Errors reading HTTP rules out of a descriptor pool.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The pool has no `google.api.http` extension.
    #[error("the descriptor pool does not define the google.api.http extension")]
    NoHttpExtension,
    /// A method's option could not be read as an `HttpRule`.
    #[error("the google.api.http option of {method} is malformed: {source}")]
    Malformed {
        /// Full name of the method.
        method: String,
        /// Why it did not decode.
        source: prost::DecodeError,
    },
}

/// One HTTP binding of one RPC.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// HTTP method, upper case.
    pub http_method: String,
    /// Path template, e.g. `/v1/users/{user_id}`.
    pub path: String,
    /// Full RPC name, e.g. `weft.user.v1.UserService.GetUser`.
    pub rpc: String,
    /// Request field bound to the body (`*`, a field name, or empty).
    pub body: String,
    /// Response field returned as the body (empty for the whole response).
    pub response_body: String,
    /// Whether the RPC streams its responses.
    pub server_streaming: bool,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} -> {} body={} response_body={}{}",
            self.http_method,
            self.path,
            self.rpc,
            self.body,
            self.response_body,
            if self.server_streaming {
                " streaming"
            } else {
                ""
            }
        )
    }
}

/// The `google.api.http` rule of a method, if it has one.
pub fn http_rule(method: &MethodDescriptor) -> Result<Option<HttpRule>, RouteError> {
    let pool = method.parent_pool();
    let ext = pool
        .get_extension_by_name("google.api.http")
        .ok_or(RouteError::NoHttpExtension)?;
    let options = method.options();
    if !options.has_extension(&ext) {
        return Ok(None);
    }
    let Value::Message(rule) = options.get_extension(&ext).into_owned() else {
        return Ok(None);
    };
    HttpRule::decode(rule.encode_to_vec().as_slice())
        .map(Some)
        .map_err(|source| RouteError::Malformed {
            method: method.full_name().to_owned(),
            source,
        })
}

/// Every binding (the rule and its `additional_bindings`) of every method in `pool`.
pub fn route_table(pool: &DescriptorPool) -> Result<Vec<Route>, RouteError> {
    let mut routes = BTreeSet::new();
    for service in pool.services() {
        for method in service.methods() {
            let Some(rule) = http_rule(&method)? else {
                continue;
            };
            let streaming = method.is_server_streaming();
            let rpc = method.full_name().to_owned();
            for binding in std::iter::once(&rule).chain(rule.additional_bindings.iter()) {
                if let Some((verb, path)) = pattern(binding) {
                    routes.insert(Route {
                        http_method: verb,
                        path,
                        rpc: rpc.clone(),
                        body: binding.body.clone(),
                        response_body: binding.response_body.clone(),
                        server_streaming: streaming,
                    });
                }
            }
        }
    }
    Ok(routes.into_iter().collect())
}

fn pattern(rule: &HttpRule) -> Option<(String, String)> {
    Some(match rule.pattern.as_ref()? {
        Pattern::Get(p) => ("GET".into(), p.clone()),
        Pattern::Put(p) => ("PUT".into(), p.clone()),
        Pattern::Post(p) => ("POST".into(), p.clone()),
        Pattern::Delete(p) => ("DELETE".into(), p.clone()),
        Pattern::Patch(p) => ("PATCH".into(), p.clone()),
        Pattern::Custom(c) => (c.kind.to_ascii_uppercase(), c.path.clone()),
    })
}

/// The route table as text, one binding a line, sorted: the format of the baseline.
pub fn render(routes: &[Route]) -> String {
    routes.iter().map(|r| format!("{r}\n")).collect()
}

/// How a route table differs from its baseline.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RouteDiff {
    /// Baseline lines that are gone or changed: these break REST clients.
    pub removed: Vec<String>,
    /// New lines: additive, safe.
    pub added: Vec<String>,
}

impl RouteDiff {
    /// Whether the change breaks existing REST clients.
    pub fn is_breaking(&self) -> bool {
        !self.removed.is_empty()
    }
}

/// Compares a rendered route table with the baseline text. A changed route shows as
/// one removed and one added line.
pub fn diff(baseline: &str, current: &str) -> RouteDiff {
    let lines = |s: &str| -> BTreeSet<String> {
        s.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    let (old, new) = (lines(baseline), lines(current));
    RouteDiff {
        removed: old.difference(&new).cloned().collect(),
        added: new.difference(&old).cloned().collect(),
    }
}

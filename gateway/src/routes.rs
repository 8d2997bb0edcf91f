//! The route table: every `google.api.http` binding (and its `additional_bindings`)
//! of every method in the descriptor pool, checked against the request and response
//! messages at start-up, so a bad rule stops the gateway instead of failing a caller.
//! Adding an RPC with an HTTP rule needs no gateway code.

use std::sync::Arc;

use http::Method;
use http::uri::PathAndQuery;
use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor};
use weft_proto::google::api::HttpRule;
use weft_proto::google::api::http_rule::Pattern;

use crate::template::{Bindings, PathError, Template};

/// Why the route table cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The rules could not be read.
    #[error(transparent)]
    Rules(#[from] weft_proto::routes::RouteError),
    /// A path template does not parse.
    #[error("{method}: {source}")]
    Template {
        /// The RPC.
        method: String,
        /// Why.
        source: crate::template::TemplateError,
    },
    /// A rule names something the messages do not have.
    #[error("{method}: {reason}")]
    Invalid {
        /// The RPC.
        method: String,
        /// Why.
        reason: String,
    },
}

/// Where the HTTP body goes in the request message.
#[derive(Debug, Clone)]
pub enum BodyRule {
    /// No body; fields not bound by the path come from query parameters.
    None,
    /// `body: "*"`: the body is the whole request message.
    Whole,
    /// `body: "field"`: the body is that field; the rest come from query parameters.
    Field(FieldDescriptor),
}

/// One HTTP binding of one RPC.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The HTTP method.
    pub method: Method,
    /// The path template.
    pub template: Template,
    /// The gRPC method it calls.
    pub rpc: MethodDescriptor,
    /// Where the body goes.
    pub body: BodyRule,
    /// The response field returned as the body, if not the whole response.
    pub response_body: Option<FieldDescriptor>,
    /// The path variables' fields, resolved (outermost first), in template order.
    pub path_fields: Vec<Vec<FieldDescriptor>>,
    /// The gRPC path, `/package.Service/Method`, made once.
    path: PathAndQuery,
    /// The route's label in metrics and traces, `GET /v1/orders/{order_id}`, made once.
    label: Arc<str>,
}

impl Binding {
    /// The gRPC path, `/package.Service/Method`.
    pub fn grpc_path(&self) -> &PathAndQuery {
        &self.path
    }

    /// Full name of the gRPC service.
    pub fn service(&self) -> &str {
        self.rpc.parent_service().full_name()
    }

    /// The route's label: its method and template, `GET /v1/orders/{order_id}`.
    pub fn label(&self) -> &Arc<str> {
        &self.label
    }

    /// The OpenAPI names of the path variables (see [`Template::openapi_names`]),
    /// avoiding the names of the request's top-level fields.
    pub fn openapi_names(&self) -> Vec<String> {
        let input = self.rpc.input();
        self.template
            .openapi_names(|name| input.get_field_by_name(name).is_some())
    }

    /// The OpenAPI path of this binding.
    pub fn openapi_path(&self) -> String {
        self.template.openapi_path(&self.openapi_names())
    }

    /// Whether the RPC streams its responses.
    pub fn streaming(&self) -> bool {
        self.rpc.is_server_streaming()
    }
}

/// The outcome of routing a request.
#[derive(Debug)]
pub enum Routed {
    /// A binding and the values its path variables took.
    Found(Arc<Binding>, Bindings),
    /// The path exists but not for this method; the methods that exist.
    MethodNotAllowed(Vec<Method>),
    /// No binding has this path.
    NotFound,
}

/// Every binding, most specific template first.
#[derive(Debug, Clone, Default)]
pub struct Router {
    bindings: Vec<Arc<Binding>>,
}

impl Router {
    /// Reads every rule of every service in `pool`.
    pub fn from_pool(pool: &DescriptorPool) -> Result<Self, RouteError> {
        let mut bindings = Vec::new();
        for service in pool.services() {
            for method in service.methods() {
                if method.is_client_streaming() {
                    continue;
                }
                let Some(rule) = weft_proto::routes::http_rule(&method)? else {
                    continue;
                };
                for r in std::iter::once(&rule).chain(rule.additional_bindings.iter()) {
                    if let Some(b) = binding(&method, r)? {
                        bindings.push(Arc::new(b));
                    }
                }
            }
        }
        bindings.sort_by(|a, b| a.template.specificity_cmp(&b.template));
        Ok(Self { bindings })
    }

    /// Every binding.
    pub fn bindings(&self) -> &[Arc<Binding>] {
        &self.bindings
    }

    /// The binding for `method` and the raw `path`.
    pub fn route(&self, method: &Method, path: &str) -> Result<Routed, PathError> {
        let mut allowed = Vec::new();
        for b in &self.bindings {
            let Some(vars) = b.template.matches(path)? else {
                continue;
            };
            if b.method == *method {
                return Ok(Routed::Found(b.clone(), vars));
            }
            if !allowed.contains(&b.method) {
                allowed.push(b.method.clone());
            }
        }
        Ok(if allowed.is_empty() {
            Routed::NotFound
        } else {
            Routed::MethodNotAllowed(allowed)
        })
    }
}

/// The binding of one rule of `method`, checked against its messages; `None` for a
/// rule without a pattern.
fn binding(method: &MethodDescriptor, rule: &HttpRule) -> Result<Option<Binding>, RouteError> {
    let name = method.full_name().to_owned();
    let invalid = |reason: String| RouteError::Invalid {
        method: name.clone(),
        reason,
    };
    let Some(pattern) = rule.pattern.as_ref() else {
        return Ok(None);
    };
    let (verb, path) = method_and_path(pattern).map_err(invalid)?;
    let template = Template::parse(path).map_err(|source| RouteError::Template {
        method: name.clone(),
        source,
    })?;
    let input = method.input();
    let path_fields = path_fields(&input, &template).map_err(invalid)?;
    let body = match rule.body.as_str() {
        "" => BodyRule::None,
        "*" => BodyRule::Whole,
        field => BodyRule::Field(
            input
                .get_field_by_name(field)
                .ok_or_else(|| invalid(format!("body field {field:?} is not in the request")))?,
        ),
    };
    let response_body = match rule.response_body.as_str() {
        "" => None,
        field => Some(method.output().get_field_by_name(field).ok_or_else(|| {
            invalid(format!(
                "response_body field {field:?} is not in the response"
            ))
        })?),
    };
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    let path = PathAndQuery::from_maybe_shared(path)
        .map_err(|e| invalid(format!("no gRPC path for it: {e}")))?;
    Ok(Some(Binding {
        label: format!("{verb} {template}").into(),
        method: verb,
        template,
        rpc: method.clone(),
        body,
        response_body,
        path_fields,
        path,
    }))
}

/// The HTTP method and path template of a rule's pattern.
fn method_and_path(pattern: &Pattern) -> Result<(Method, &String), String> {
    Ok(match pattern {
        Pattern::Get(p) => (Method::GET, p),
        Pattern::Put(p) => (Method::PUT, p),
        Pattern::Post(p) => (Method::POST, p),
        Pattern::Delete(p) => (Method::DELETE, p),
        Pattern::Patch(p) => (Method::PATCH, p),
        Pattern::Custom(c) => (
            Method::from_bytes(c.kind.to_ascii_uppercase().as_bytes())
                .map_err(|_| format!("bad custom method {:?}", c.kind))?,
            &c.path,
        ),
    })
}

/// The fields of `template`'s variables in `input`, each a singular value that one
/// path segment can give.
fn path_fields(
    input: &MessageDescriptor,
    template: &Template,
) -> Result<Vec<Vec<FieldDescriptor>>, String> {
    let mut path_fields = Vec::new();
    for v in template.variables() {
        let fields = resolve(input, &v.field_path).map_err(str::to_owned)?;
        let leaf = fields.last().ok_or_else(|| "empty field path".to_owned())?;
        if leaf.is_list() || leaf.is_map() || !is_path_scalar(leaf) {
            return Err(format!(
                "path variable {} must be a singular scalar, enum or string-valued well-known type",
                v.dotted()
            ));
        }
        path_fields.push(fields);
    }
    Ok(path_fields)
}

/// The fields along `path` from `message`, or why not.
pub fn resolve(
    message: &MessageDescriptor,
    path: &[String],
) -> Result<Vec<FieldDescriptor>, &'static str> {
    let mut out = Vec::with_capacity(path.len());
    let mut current = message.clone();
    for (i, part) in path.iter().enumerate() {
        let field = current
            .get_field_by_name(part)
            .or_else(|| current.get_field_by_json_name(part))
            .ok_or("the field path names a field the message does not have")?;
        if i + 1 < path.len() {
            match field.kind() {
                Kind::Message(m) if !field.is_list() && !field.is_map() => current = m,
                _ => return Err("the field path goes through a field that is not a message"),
            }
        }
        out.push(field);
    }
    Ok(out)
}

/// How a well-known message type is written in JSON when it is not an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarForm {
    /// A string: `Timestamp` (RFC 3339), `Duration` (`1.5s`), `FieldMask` (`a,b.c`).
    String,
    /// A wrapper (`Int32Value`, `StringValue`, …): the wrapped scalar.
    Wrapper,
}

/// The scalar JSON form of a well-known message type, if it has one: such a message
/// can take its value from one path segment or query parameter.
pub fn scalar_form(m: &MessageDescriptor) -> Option<ScalarForm> {
    Some(match m.full_name() {
        "google.protobuf.Timestamp" | "google.protobuf.Duration" | "google.protobuf.FieldMask" => {
            ScalarForm::String
        }
        "google.protobuf.StringValue"
        | "google.protobuf.BytesValue"
        | "google.protobuf.Int64Value"
        | "google.protobuf.UInt64Value"
        | "google.protobuf.Int32Value"
        | "google.protobuf.UInt32Value"
        | "google.protobuf.BoolValue"
        | "google.protobuf.DoubleValue"
        | "google.protobuf.FloatValue" => ScalarForm::Wrapper,
        _ => return None,
    })
}

/// Whether a field can take its value from one path segment.
fn is_path_scalar(field: &FieldDescriptor) -> bool {
    match field.kind() {
        Kind::Message(m) => scalar_form(&m).is_some(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn weft_contracts_route() {
        let router = Router::from_pool(weft_proto::descriptor_pool()).unwrap();
        assert_eq!(
            router.bindings().len(),
            weft_proto::routes::route_table(weft_proto::descriptor_pool())
                .unwrap()
                .len()
        );
        let found = |m: Method, p: &str| match router.route(&m, p).unwrap() {
            Routed::Found(b, vars) => Some((b.rpc.name().to_owned(), vars)),
            _ => None,
        };
        assert_eq!(found(Method::POST, "/v1/users").unwrap().0, "SignUp");
        assert_eq!(found(Method::POST, "/v1/users:login").unwrap().0, "Login");
        let (rpc, vars) = found(Method::POST, "/v1/orders/o-1:pay").unwrap();
        assert_eq!((rpc.as_str(), vars[0].1.as_str()), ("PayOrder", "o-1"));
        let (rpc, vars) = found(Method::PATCH, "/v1/users/u-1").unwrap();
        assert_eq!(rpc, "UpdateUser");
        assert_eq!(vars[0].0, ["user", "user_id"]);
        assert_eq!(
            found(Method::GET, "/v1/analytics/metrics:stream")
                .unwrap()
                .0,
            "StreamMetrics"
        );
        assert!(matches!(
            router.route(&Method::DELETE, "/v1/orders/x").unwrap(),
            Routed::MethodNotAllowed(m) if m == [Method::GET]
        ));
        assert!(matches!(
            router.route(&Method::GET, "/v2/nothing").unwrap(),
            Routed::NotFound
        ));
    }
}

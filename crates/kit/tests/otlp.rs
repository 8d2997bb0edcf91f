//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans reach an OTLP/gRPC collector, named
//! after the service and parented on the caller's trace. The collector here is a real
//! gRPC server speaking the OTLP trace service.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};
use weft_kit::config::TelemetryArgs;
use weft_kit::telemetry::{self, MapCarrier};

struct Collector(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let _ = self.0.send(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_otlp_collector() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(tx)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let args = TelemetryArgs {
        otlp_endpoint: Some(format!("http://{addr}")),
        ..TelemetryArgs::default()
    };
    let guard = telemetry::init("weft-otlp-test", &args).unwrap();
    let mut caller = MapCarrier::default();
    caller.0.insert(
        "traceparent".into(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
    );
    {
        let span = tracing::info_span!("checkout");
        telemetry::set_parent_from(&span, &caller);
        let _entered = span.enter();
        tracing::info!("inside the traced work");
    }
    // Dropping the guard flushes the batch.
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .unwrap();

    let export = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("the collector received nothing")
        .unwrap();
    let resource = export.resource_spans[0].resource.clone().unwrap();
    let service = resource
        .attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value.clone())
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    assert!(service.contains("weft-otlp-test"), "{service}");
    let spans: Vec<_> = export
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    let checkout = spans
        .iter()
        .find(|s| s.name == "checkout")
        .expect("the checkout span");
    assert_eq!(
        hex(&checkout.trace_id),
        "0af7651916cd43dd8448eb211c80319c",
        "same trace as the caller"
    );
    assert_eq!(
        hex(&checkout.parent_span_id),
        "b7ad6b7169203331",
        "parented on the caller's span"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

package main

// The extension types envoy/envoy.yaml names in its typed_config and
// typed_extension_protocol_options "@type"s, linked in so that their Any payloads
// resolve (a type that is not linked here is reported as unresolvable, with the
// import to add). One blank import per Go package:
//
//	@type (type.googleapis.com/...)                                          Go package (github.com/envoyproxy/go-control-plane/...)
//	envoy.config.trace.v3.OpenTelemetryConfig                                envoy/config/trace/v3
//	envoy.extensions.access_loggers.stream.v3.StdoutAccessLog                envoy/extensions/access_loggers/stream/v3
//	envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit          envoy/extensions/filters/http/local_ratelimit/v3
//	envoy.extensions.filters.http.router.v3.Router                           envoy/extensions/filters/http/router/v3
//	envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
//	                                                                         envoy/extensions/filters/network/http_connection_manager/v3
//	envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig
//	                                                                         envoy/extensions/resource_monitors/downstream_connections/v3
//	envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig         envoy/extensions/resource_monitors/fixed_heap/v3
//	envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate     envoy/extensions/retry/host/previous_hosts/v3
//	envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext           envoy/extensions/transport_sockets/tls/v3
//	envoy.extensions.upstreams.http.v3.HttpProtocolOptions                   envoy/extensions/upstreams/http/v3
//
// The bootstrap itself (envoy.config.bootstrap.v3.Bootstrap) is imported in main.go.
import (
	_ "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/fixed_heap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

//! How a service that verifies tokens finds the user service's keys: the flags, the
//! background refresher and the readiness probe, shared by every such service.

use std::sync::Arc;
use std::time::Duration;

use weft_kit::host::Host;

use crate::token::TokenConfig;
use crate::verify::{Verifier, keep_fresh};

/// Where the token keys come from.
#[derive(Debug, Clone, clap::Args)]
pub struct JwksArgs {
    /// The user service, whose JWKS verifies access tokens: `http://host:port`, or its
    /// replicas' addresses separated by commas (each is asked in turn until one
    /// answers; they share one signing key).
    #[arg(
        long,
        env = "WEFT_USER_SERVICE_URL",
        default_value = "http://127.0.0.1:5051"
    )]
    pub user_service_url: String,
    /// How often the token keys are refreshed.
    #[arg(long, env = "WEFT_JWKS_REFRESH", default_value = "5m", value_parser = humantime::parse_duration)]
    pub jwks_refresh: Duration,
}

impl JwksArgs {
    /// Keeps `verifier` loaded from the user service until `stop` resolves.
    pub fn refresh<S>(
        &self,
        verifier: Arc<Verifier>,
        stop: S,
    ) -> impl std::future::Future<Output = ()> + Send + 'static + use<S>
    where
        S: std::future::Future<Output = ()> + Send + 'static,
    {
        keep_fresh(
            verifier,
            self.user_service_url.clone(),
            self.jwks_refresh,
            stop,
        )
    }
}

impl JwksArgs {
    /// A verifier of the user service's tokens (default token settings), kept loaded
    /// from its JWKS beside `host`'s servers until they stop (the background task
    /// "token keys").
    pub fn verifier(&self, host: &mut Host) -> Arc<Verifier> {
        let verifier = Arc::new(Verifier::new(&TokenConfig::default()));
        let (args, loaded) = (self.clone(), verifier.clone());
        host.background("token keys", move |stop| {
            args.refresh(loaded, async move { stop.cancelled().await })
        });
        verifier
    }
}

/// A readiness probe: ready once the user service's JWKS has given at least one key.
pub fn keys_probe(
    verifier: Arc<Verifier>,
) -> impl Fn() -> std::future::Ready<Result<(), String>> + Send + Sync + 'static {
    move || {
        std::future::ready(if verifier.key_count() > 0 {
            Ok(())
        } else {
            Err("no token keys from the user service yet".into())
        })
    }
}

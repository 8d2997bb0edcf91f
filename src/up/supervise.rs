//! Keeping the mesh up once it has started: a service or the embedded broker that
//! dies is started again (see [`crate::restarts`]); one that crashes over and over is
//! marked failed and tried again slowly while the rest of the mesh goes on. The
//! mesh stops on the shutdown signal, or when a child exits that cannot or must not
//! be started again.

use std::path::Path;
use std::process::ExitStatus;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::children::{self, ServiceSpec};
use crate::cli::UpArgs;
use crate::restarts::{Next, Policy, Restarts};

use super::backbone::Backbone;
use super::running::Running;

/// The running mesh and what it takes to start its children again.
pub(super) struct Supervisor<'a> {
    running: &'a mut Running,
    specs: &'a [ServiceSpec],
    backbone: &'a Backbone,
    data_dir: &'a Path,
    restarts: Restarts,
    broker_fail_fast: bool,
    /// Children waiting to be started again, and when.
    due: Vec<(Instant, String)>,
}

/// What woke the supervisor.
enum Event {
    Shutdown,
    Exited(String),
    Due,
}

impl<'a> Supervisor<'a> {
    /// Supervises the children in `running` with the restart policy of `args`.
    pub(super) fn new(
        args: &UpArgs,
        running: &'a mut Running,
        specs: &'a [ServiceSpec],
        backbone: &'a Backbone,
        data_dir: &'a Path,
    ) -> Self {
        let restarts = Restarts::new(Policy {
            max_restarts: args.max_restarts,
            window: args.restart_window,
            failed_retry: args.failed_retry,
        })
        .without_backoff("broker");
        Self {
            running,
            specs,
            backbone,
            data_dir,
            restarts,
            broker_fail_fast: args.broker_fail_fast,
            due: Vec::new(),
        }
    }

    /// Keeps the mesh up until `shutdown` or a child that is not started again,
    /// then stops every child; an error names that child.
    pub(super) async fn run(mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let exited = self.watch(shutdown).await;
        if let Some(name) = &exited {
            eprintln!("weft: {name} exited unexpectedly; stopping everything");
            eprintln!("{}", children::tail_of(&self.log_of(name)));
        }
        self.running.stop_all().await;
        match exited {
            None => Ok(()),
            Some(name) => anyhow::bail!("{name} exited unexpectedly"),
        }
    }

    /// Restarts children until `shutdown` (none) or a child that is not started
    /// again (its name).
    async fn watch(&mut self, shutdown: &CancellationToken) -> Option<String> {
        loop {
            let next = self.due.iter().map(|(at, _)| *at).min();
            let event = tokio::select! {
                _ = shutdown.cancelled() => Event::Shutdown,
                name = self.running.first_exit() => Event::Exited(name),
                _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now).into()), if next.is_some() => Event::Due,
            };
            match event {
                Event::Shutdown => return None,
                Event::Due => {
                    if let Some(name) = self.start_due().await {
                        return Some(name);
                    }
                }
                Event::Exited(name) => {
                    if let Some(name) = self.exited(name) {
                        return Some(name);
                    }
                }
            }
        }
    }

    /// Starts again each child whose wait is over. One that fails to start counts as
    /// crashed once more: it waits again, or its name comes back when the mesh must
    /// stop (the broker under --broker-fail-fast).
    async fn start_due(&mut self) -> Option<String> {
        let now = Instant::now();
        let (ready, later): (Vec<_>, Vec<_>) = self.due.drain(..).partition(|(at, _)| *at <= now);
        self.due = later;
        for (_, name) in ready {
            let spec = self.specs.iter().find(|s| s.name == name);
            let respawned = match (spec, &self.backbone.embedded) {
                (Some(spec), _) => children::spawn(
                    spec,
                    self.data_dir,
                    &self.backbone.bootstrap,
                    &self.backbone.kafka.client,
                ),
                (None, Some(b)) => b.start().await,
                (None, None) => continue,
            };
            match respawned {
                Ok(child) => {
                    if let Some(m) = self.running.get_mut(&name) {
                        m.child = Some(child);
                    }
                }
                Err(e) => {
                    eprintln!("weft: starting the {name} service again failed: {e:#}");
                    if let Some(name) = self.crashed(name) {
                        return Some(name);
                    }
                }
            }
        }
        None
    }

    /// Schedules the restart of the child `name` that just exited; its name back
    /// when it is not started again and the mesh must stop.
    fn exited(&mut self, name: String) -> Option<String> {
        let spec = self.specs.iter().find(|s| s.name == name);
        if spec.is_none() && (name != "broker" || self.backbone.embedded.is_none()) {
            return Some(name);
        }
        let status = self.take_status(&name);
        // A service that says starting again cannot help (stale offsets: the operator
        // must choose --reset-offsets) is not restarted.
        if status.and_then(|s| s.code()) == Some(i32::from(weft_kit::cli::EXIT_UNRECOVERABLE)) {
            eprintln!(
                "weft: the {name} service stopped and asks not to be started again until its error is dealt with"
            );
            return Some(name);
        }
        self.crashed(name)
    }

    /// Counts a crash of the child `name` and schedules its restart; its name back
    /// when the broker must not be started again (--broker-fail-fast).
    fn crashed(&mut self, name: String) -> Option<String> {
        let window = humantime::format_duration(self.restarts.policy().window);
        let next = self.restarts.crashed(&name, Instant::now());
        if let Next::Failed { count, .. } = next
            && name == "broker"
            && self.broker_fail_fast
        {
            eprintln!(
                "weft: the embedded broker crashed {count} times within {window} (--broker-fail-fast)"
            );
            return Some(name);
        }
        self.report_restart(&name, next, window);
        self.due.push((Instant::now() + next.wait(), name));
        None
    }

    /// The exit status of the child `name`, which is left without a process.
    fn take_status(&mut self, name: &str) -> Option<ExitStatus> {
        self.running.get_mut(name).and_then(|m| {
            let status = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            m.child = None;
            status
        })
    }

    fn report_restart(&self, name: &str, next: Next, window: humantime::FormattedDuration) {
        let log = self.log_of(name);
        match next {
            Next::Restart { pause, count } => eprintln!(
                "weft: the {name} service exited unexpectedly; restarting it in {} ms (restart {count} of {} within {window}); see {}",
                pause.as_millis(),
                self.restarts.policy().max_restarts,
                log.display()
            ),
            Next::Failed { retry, count } => eprintln!(
                "weft: the {name} service crashed {count} times within {window}: marked failed; the rest of the mesh goes on, and it is tried again every {}; see {}",
                humantime::format_duration(retry),
                log.display()
            ),
        }
    }

    fn log_of(&self, name: &str) -> std::path::PathBuf {
        self.data_dir.join(format!("logs/{name}.log"))
    }
}

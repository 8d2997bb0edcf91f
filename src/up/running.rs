//! The children `weft up` has started, oldest first: each named, each with its
//! process or none while it waits to be started again. They stop newest first, each
//! with a grace period, and a start that fails part-way stops every one started so
//! far.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Child;

/// How long a child may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// A child process the launcher supervises; no process while it waits to be started
/// again.
pub(super) struct Managed {
    pub(super) name: String,
    pub(super) child: Option<Child>,
}

/// Every child started so far, oldest first.
#[derive(Default)]
pub(super) struct Running {
    children: Vec<Managed>,
}

impl Running {
    /// Adds `child`, started as `name`.
    pub(super) fn push(&mut self, name: &str, child: Child) {
        self.children.push(Managed {
            name: name.to_owned(),
            child: Some(child),
        });
    }

    /// The child started as `name`.
    pub(super) fn get_mut(&mut self, name: &str) -> Option<&mut Managed> {
        self.children.iter_mut().find(|m| m.name == name)
    }

    /// `result` as it is, after stopping every child started so far when it is an
    /// error: a start that fails part-way leaves nothing running.
    pub(super) async fn or_stop<T>(&mut self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        if result.is_err() {
            self.stop_all().await;
        }
        result
    }

    /// Resolves with the name of the first child that exits.
    pub(super) async fn first_exit(&mut self) -> String {
        let waits: Vec<_> = self
            .children
            .iter_mut()
            .filter_map(|m| {
                let name = m.name.clone();
                let child = m.child.as_mut()?;
                Some(Box::pin(async move {
                    let _ = child.wait().await;
                    name
                }))
            })
            .collect();
        if waits.is_empty() {
            return std::future::pending().await;
        }
        futures::future::select_all(waits).await.0
    }

    /// SIGTERM to each child, newest first; SIGKILL to any still running after the
    /// grace.
    pub(super) async fn stop_all(&mut self) {
        while let Some(m) = self.children.pop() {
            let Some(mut child) = m.child else {
                println!("stopped {} (it was waiting to start again)", m.name);
                continue;
            };
            if let Some(pid) = child.id() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
            match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                Ok(_) => println!("stopped {}", m.name),
                Err(_) => {
                    eprintln!(
                        "weft: {} did not stop within {STOP_GRACE:?}; killing it",
                        m.name
                    );
                    let _ = child.kill().await;
                }
            }
        }
    }
}

//! Running the external programs that tests drive (buf, grpcurl, Envoy's checker):
//! a program is run to its end and read as one outcome, whether it succeeded and
//! everything it printed, stdout then stderr. A program that cannot be started at all
//! panics with its name; a program that fails is the caller's to judge.

use std::process::{Command, Output};

/// The installed tool `name` (as [`crate::require_tool`] finds it) as a command to
/// add arguments to.
pub fn tool(name: &str) -> Command {
    Command::new(crate::require_tool(name))
}

/// Runs `command` to its end: whether it succeeded, and its stdout + stderr.
pub fn run(command: &mut Command) -> (bool, String) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("starting {:?}: {e}", command.get_program()));
    outcome(&out)
}

/// [`run`] for async tests, whose runtime must keep serving while the program runs
/// (the program may be talking to a server of the test).
pub async fn run_async(command: Command) -> (bool, String) {
    let program = command.get_program().to_owned();
    let out = tokio::process::Command::from(command)
        .output()
        .await
        .unwrap_or_else(|e| panic!("starting {program:?}: {e}"));
    outcome(&out)
}

fn outcome(out: &Output) -> (bool, String) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

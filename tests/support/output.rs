//! The outcome of a program a test ran (`weft` itself, a script, a checker), judged:
//! it succeeded and printed this, or it failed saying that. A failed check shows
//! everything the program printed.

use std::process::{Command, Output};

/// The stdout of `out`, after asserting that the program (`what`) succeeded.
pub fn succeeded(what: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `command` to its end: its stdout, after asserting it succeeded.
pub fn run_ok(what: &str, command: &mut Command) -> String {
    succeeded(what, &command.output().unwrap())
}

/// The stderr of `out`, after asserting that the program failed (with exit code
/// `code` when one is given) and said `says` there. `what` names the case.
pub fn failed_saying(what: &str, out: &Output, code: Option<i32>, says: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what}: succeeded: {stderr}");
    if let Some(code) = code {
        assert_eq!(out.status.code(), Some(code), "{what}: {stderr}");
    }
    assert!(stderr.contains(says), "{what}: {stderr}");
    stderr
}

/// Runs `command` to its end off the async runtime's threads: its outcome.
pub async fn output_async(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

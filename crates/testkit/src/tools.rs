//! Running the external programs that tests drive (buf, grpcurl, Envoy's checker):
//! a program is run to its end and read as one outcome, whether it succeeded and
//! everything it printed, stdout then stderr. A program that cannot be started at all
//! panics with its name; a program that fails is the caller's to judge.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The tools cache weft's scripts install into.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("WEFT_TOOLS_DIR").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/weft/tools"),
        PathBuf::from,
    )
}

/// Finds an installed tool: `$WEFT_TOOLS_DIR/bin/<name>` first, then `PATH`.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let cached = tools_dir().join("bin").join(name);
    if cached.is_file() {
        return Some(cached);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// Like [`find_tool`], but panics with the install command when the tool is missing.
pub fn require_tool(name: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| {
        panic!("{name} is not installed; run scripts/install-tools (or scripts/test, which does)")
    })
}

/// The installed tool `name` (as [`require_tool`] finds it) as a command to
/// add arguments to.
pub fn tool(name: &str) -> Command {
    Command::new(require_tool(name))
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

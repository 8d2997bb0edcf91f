//! The launcher's progress lines: `▸ what … ` flushed before the step runs, so a slow
//! step shows what it is waiting for; the caller ends the line with its outcome.

/// Starts the progress line of `what`.
pub(super) fn print_step(what: &str) {
    use std::io::Write as _;
    print!("▸ {what} … ");
    let _ = std::io::stdout().flush();
}

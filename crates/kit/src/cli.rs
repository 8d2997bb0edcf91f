//! What every weft binary does with its command line and its result: bad flags exit
//! with 64 (`EX_USAGE`) after clap's message, `--help` exits 0, a failed run prints
//! its error chain and exits 1 — or 78 (`EX_CONFIG`) when it failed in a way that
//! starting it again cannot mend ([`Unrecoverable`]), which `weft up` does not retry.

use std::process::ExitCode;

/// Parses `args` (program name first) into `C`, or prints clap's message and exits.
pub fn parse_or_exit<C: clap::Parser>(args: impl IntoIterator<Item = String>) -> C {
    match C::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 64 } else { 0 });
        }
    }
}

/// The exit code of a process that must not simply be started again.
pub const EXIT_UNRECOVERABLE: u8 = 78;

/// Marks an error that a restart cannot mend (the operator must change something
/// first), as the context of an `anyhow` error: the process exits with
/// [`EXIT_UNRECOVERABLE`].
#[derive(Debug, Clone, Copy)]
pub struct Unrecoverable;

impl std::fmt::Display for Unrecoverable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("starting again would not help")
    }
}

/// `e` marked [`Unrecoverable`] when `unrecoverable`.
pub fn failure(
    e: impl std::error::Error + Send + Sync + 'static,
    unrecoverable: bool,
) -> anyhow::Error {
    let e = anyhow::Error::new(e);
    if unrecoverable {
        e.context(Unrecoverable)
    } else {
        e
    }
}

/// The exit code of a run, printing a failure as `name: error` (with `{:#}`, which
/// shows an `anyhow` error's whole chain).
pub fn exit_code(name: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            if e.downcast_ref::<Unrecoverable>().is_some() {
                ExitCode::from(EXIT_UNRECOVERABLE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Runs `main` on a multi-threaded runtime and turns its result into an exit code.
/// Once `main` returns, tasks still blocked (a Kafka client waiting for a broker that
/// is gone) get at most two seconds before the process exits anyway.
pub fn block_on(name: &str, main: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(main);
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    exit_code(name, result)
}

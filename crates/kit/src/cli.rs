//! What every weft binary does with its command line and its result: bad flags exit
//! with 64 (`EX_USAGE`) after clap's message, `--help` exits 0, and a failed run prints
//! its error chain and exits 1.

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

/// The exit code of a run, printing a failure as `name: error` (with `{:#}`, which
/// shows an `anyhow` error's whole chain).
pub fn exit_code<E: std::fmt::Display>(name: &str, result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `main` on a multi-threaded runtime and turns its result into an exit code.
/// Once `main` returns, tasks still blocked (a Kafka client waiting for a broker that
/// is gone) get at most two seconds before the process exits anyway.
pub fn block_on<E: std::fmt::Display>(
    name: &str,
    main: impl Future<Output = Result<(), E>>,
) -> ExitCode {
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

//! A service started inside the test process on free ports.

/// Starts service `S` inside this test process on free ports (`--grpc-addr` and
/// `--admin-addr` on port 0), with `args` after those defaults, and waits until its
/// listeners are bound. Stop it with [`weft_kit::host::Running::stop`].
pub async fn spawn<S>(args: &[&str]) -> weft_kit::host::Running
where
    S: weft_kit::host::Service,
    S::Config: clap::Parser,
{
    let process = S::IDENTITY.process();
    let argv = [
        process.as_str(),
        "--grpc-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
    ]
    .into_iter()
    .chain(args.iter().copied());
    let config = <S::Config as clap::Parser>::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("bad test flags for {process}: {e}"));
    weft_kit::host::start::<S>(config)
        .await
        .unwrap_or_else(|e| panic!("{process} did not start: {e:#}"))
}

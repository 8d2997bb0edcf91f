//! `weft up`: the whole mesh on one machine. Starts the embedded broker (weft-broker,
//! or uses an external Kafka), provisions every topic explicitly, starts each service and then
//! the gateway as a child process (`weft serve <name>`) and waits until it is
//! healthy, prints where everything is, and on
//! Ctrl-C or SIGTERM stops the children in reverse order, each with a grace period.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::children::{self, Kind, ServiceSpec};
use crate::cli::UpArgs;
use crate::ports;

mod backbone;
mod banner;
mod console;
mod database;
mod plan;
mod running;
mod specs;
mod supervise;

use backbone::Backbone;
use banner::Banner;
use console::print_step;
use plan::Plan;
use running::Running;
use supervise::Supervisor;

pub use database::service_database;

/// Runs `weft up`.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let shutdown = weft_kit::shutdown::on_signal();
    let data_dir = data_dir(&args.data_dir)?;
    // Before anything else: a second launcher must leave the running mesh's files be.
    let _run_lock = crate::run_lock::take(&data_dir)?;
    println!(
        "weft {} — data in {}",
        env!("CARGO_PKG_VERSION"),
        data_dir.display()
    );

    let plan = Plan::new(&args)?;
    ports::check_free(&plan.wanted_ports(&args))?;

    std::fs::create_dir_all(data_dir.join("logs"))?;
    let mut running = Running::default();
    let backbone = Backbone::start(&args, &data_dir, &mut running).await?;
    backbone.provision(&mut running).await?;
    let databases = running.or_stop(database::databases(&args).await).await?;
    let specs = specs::specs(&args, &plan, &databases);
    start_in_order(&specs, &data_dir, &backbone, &mut running).await?;

    Banner {
        broker: args.broker,
        backbone: &backbone,
        specs: &specs,
        gateway: plan.gateway,
        data_dir: &data_dir,
    }
    .print(started);

    if args.check {
        running.stop_all().await;
        return Ok(());
    }
    Supervisor::new(&args, &mut running, &specs, &backbone, &data_dir)
        .run(&shutdown)
        .await
}

/// The data dir, created when missing, as an absolute path.
fn data_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data dir {}", dir.display()))?;
    Ok(std::path::absolute(dir)?)
}

/// Starts each child of `specs` in order and waits until it is healthy (the others
/// need the user service's token keys to be ready); a failure stops every child.
async fn start_in_order(
    specs: &[ServiceSpec],
    data_dir: &Path,
    backbone: &Backbone,
    running: &mut Running,
) -> anyhow::Result<()> {
    for spec in specs {
        let t = Instant::now();
        print_step(&format!(
            "starting the {} on {}",
            match spec.kind {
                Kind::Service => format!("{} service", spec.name),
                Kind::Gateway => "gateway".to_owned(),
            },
            spec.grpc
        ));
        let spawned = children::spawn(spec, data_dir, &backbone.bootstrap, &backbone.kafka.client);
        let mut child = running.or_stop(spawned).await?;
        let log = data_dir.join(format!("logs/{}.log", spec.name));
        let healthy = children::wait_healthy(spec, &mut child, &log, Duration::from_secs(60)).await;
        running.push(&spec.name, child);
        if let Err(e) = healthy {
            println!("failed");
            running.stop_all().await;
            return Err(e);
        }
        println!("ok ({} ms)", t.elapsed().as_millis());
    }
    Ok(())
}

//! End to end through the `weft` binary: `weft up` starts the embedded broker with
//! its topics, events published through the outbox show in `weft tail` decoded by
//! type, and with SQLite broker storage they survive a restart of the mesh.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

mod support;
use support::kafka::signed_up;
use support::output::{failed_saying, output_async};
use support::{BrokerKind, MeshBroker, Ports, Up, WEFT, grpc, on_each_broker};
use weft_events::db::sqlite_url;
use weft_events::kafka::KafkaArgs;
use weft_events::outbox::RelayConfig;
use weft_events::{Database, Outbox, Relay};
use weft_proto::user::SignupSource;

fn tail(broker: &MeshBroker, topic: &str) -> (bool, String, String) {
    let out = Command::new(WEFT)
        .args(["tail", topic, "--exit"])
        .env_remove("WEFT_KAFKA_PREFIX")
        .envs(broker.env())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

on_each_broker!(async tail_story =>
    up_provisions_topics_and_tail_decodes_events_across_restarts,
    up_provisions_topics_and_tail_decodes_events_across_restarts_on_kafka
);

/// The story of the tests above; on Apache Kafka it is `weft up --broker external`,
/// with a fresh data dir (no `logs/`).
async fn tail_story(kind: BrokerKind) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ports = Ports::free();
    let up = Up::start_on_async(kind, &data, &ports, &[]).await;
    let broker = up.broker.clone();
    let port = &broker;

    // Publish one signup through the outbox of a service database.
    let db = Database::connect(&sqlite_url(dir.path(), "svc").unwrap())
        .await
        .unwrap();
    let event = signed_up("u-42", "ada@example.com", "Ada", SignupSource::Mobile);
    let mut tx = db.begin().await.unwrap();
    Outbox::enqueue(&mut tx, &event).await.unwrap();
    tx.commit().await.unwrap();
    let mut kafka = KafkaArgs::new(broker.bootstrap());
    kafka.client.prefix = broker.prefix().to_owned();
    let relay = Relay::new(db, &kafka, "up-test", RelayConfig::default()).unwrap();
    assert_eq!(relay.publish_pending().await.unwrap(), 1);

    let (ok, out, err) = tail(port, "user-events");
    assert!(ok, "{err}");
    let record: serde_json::Value =
        serde_json::from_str(out.lines().next().expect("one record")).unwrap();
    assert_eq!(record["type"], "weft.user.v1.UserSignedUp");
    assert_eq!(record["key"], "u-42");
    assert_eq!(record["event"]["email"], "ada@example.com");
    assert_eq!(record["event"]["source"], "SIGNUP_SOURCE_MOBILE");
    assert_eq!(record["headers"]["ce_specversion"], "1.0");
    assert_eq!(record["headers"]["content-type"], "application/protobuf");
    assert_eq!(
        record["event"]["metadata"]["eventId"],
        event.metadata.as_ref().unwrap().event_id.as_str()
    );

    // The order service reacted with the welcome order.
    let welcome = weft_testkit::eventually(
        "a welcome order on order-events",
        std::time::Duration::from_secs(60),
        || async {
            let (ok, out, err) = tail(port, "order-events");
            assert!(ok, "{err}");
            let first = out.lines().next()?;
            Some(serde_json::from_str::<serde_json::Value>(first).unwrap())
        },
    )
    .await;
    assert_eq!(welcome["event"]["kind"], "ORDER_KIND_WELCOME");
    assert_eq!(welcome["event"]["userId"], "u-42");
    assert_eq!(
        welcome["headers"]["ce_causationid"],
        event.metadata.as_ref().unwrap().event_id.as_str()
    );

    // The notification service's topic holds only what it sent (the welcome email
    // and the welcome order's confirmation, as they get sent).
    let (ok, out, err) = tail(port, "notification-events");
    assert!(ok, "{err}");
    for line in out.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["type"], "weft.notification.v1.EmailSent", "{line}");
        assert_eq!(record["event"]["userId"], "u-42");
    }
    // The dead-letter topics exist and are empty.
    for topic in [
        "user-events.dlq",
        "order-events.dlq",
        "notification-events.dlq",
    ] {
        let (ok, out, err) = tail(port, topic);
        assert!(ok && out.is_empty(), "{topic}: {err}{out}");
    }
    // A topic weft does not have is a clear error.
    let (ok, _, err) = tail(port, "no-such-topic");
    assert!(!ok && err.contains("does not exist"), "{err}");

    up.stop();

    // Same data dir (and broker): the broker kept the event.
    let up = {
        let (broker, data, ports) = (broker.clone(), data.clone(), ports.clone());
        tokio::task::spawn_blocking(move || Up::start_with_broker(broker, &data, &ports, None, &[]))
            .await
            .unwrap()
    };
    let (ok, out, err) = tail(port, "user-events");
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    up.stop();
}

#[test]
fn bad_flags_exit_64_and_external_broker_needs_an_address() {
    let out = Command::new(WEFT)
        .args(["up", "--broker-port", "not-a-port"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = Command::new(WEFT)
        .args(["up", "--broker", "external"])
        .env_remove("KAFKA_BROKERS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--kafka-brokers"));
    let out = Command::new(WEFT).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    // Values that would break a service are refused before it starts, saying why.
    for (service, flag, value, why) in [
        ("user", "--retention", "0s", "at least 1m"),
        ("order", "--retention", "30s", "at least 1m"),
        ("notification", "--prune-interval", "0s", "above zero"),
        ("user", "--hash-queue", "0", "--hash-queue"),
        (
            "analytics",
            "--max-streams-per-client",
            "0",
            "--max-streams-per-client",
        ),
    ] {
        let out = Command::new(WEFT)
            .args(["serve", service, flag, value])
            .output()
            .unwrap();
        failed_saying(&format!("{service} {flag} {value}"), &out, Some(64), why);
    }
    for (flag, value) in [
        ("--max-restarts", "0"),
        ("--restart-window", "0s"),
        ("--failed-retry", "0s"),
    ] {
        let out = Command::new(WEFT)
            .args(["up", flag, value])
            .output()
            .unwrap();
        failed_saying(&format!("{flag} {value}"), &out, Some(64), flag);
    }
}

/// A launcher killed with SIGKILL leaves no broker or service behind: they notice the
/// lost parent and stop.
#[test]
fn a_killed_launcher_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    Up::start(dir.path(), &ports).kill9();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for port in [ports.broker, ports.user, ports.order] {
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "port {port} still served after the launcher died"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// Runs `command` (a `weft up`): its stderr, after asserting that it exited with 1
/// within 10 s (at once, not after a timeout).
fn refused_at_once(mut command: Command) -> String {
    let started = std::time::Instant::now();
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "at once, not after a timeout"
    );
    stderr
}

/// A port the mesh needs that another process holds stops `weft up` at once, naming
/// the port, its holder and the flag that moves it; nothing is started.
#[test]
fn taken_ports_stop_the_start_at_once_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let broker = std::net::TcpListener::bind(("127.0.0.1", ports.broker)).unwrap();
    let gateway = std::net::TcpListener::bind(("127.0.0.1", ports.gateway)).unwrap();
    let stderr = refused_at_once(support::up_command(dir.path(), &ports));
    let me = format!("by pid {}", std::process::id());
    for (port, flag) in [
        (ports.broker, "--broker-port"),
        (ports.gateway, "--gateway-port"),
    ] {
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("127.0.0.1:{port} ")))
            .unwrap_or_else(|| panic!("no line for {port}: {stderr}"));
        assert!(line.contains(flag) && line.contains(&me), "{line}");
    }
    assert!(
        !dir.path().join("run/broker.pid").exists(),
        "no broker was started"
    );
    drop((broker, gateway));
}

/// A second `weft up` on the data dir a mesh runs on is refused at once, naming the
/// running launcher, and touches nothing of it: the pid files still name the running
/// mesh's processes, and nothing of the second one was started.
#[test]
fn a_second_launcher_on_a_running_data_dir_is_refused_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let up = Up::start(dir.path(), &ports);
    let pid_files = || -> std::collections::BTreeMap<String, String> {
        std::fs::read_dir(dir.path().join("run"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "pid"))
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                (p.file_name().unwrap().to_string_lossy().into_owned(), text)
            })
            .collect()
    };
    let before = pid_files();
    assert!(before.contains_key("broker.pid"), "{before:?}");

    // Other ports, so nothing but the data dir is shared.
    let other = Ports::free();
    let stderr = refused_at_once(support::up_command(dir.path(), &other));
    assert!(
        stderr.contains("a mesh already runs on the data dir")
            && stderr.contains(&format!("pid {}", up.pid())),
        "{stderr}"
    );
    assert_eq!(pid_files(), before, "the running mesh's pid files changed");
    for port in [other.broker, other.user, other.gateway] {
        assert!(
            !listening_on(port),
            "the refused launcher started something on {port}"
        );
    }
    up.stop();
}

/// A start that fails after the broker is up (here: no PostgreSQL where DATABASE_URL
/// points) stops the broker it started: nothing is left running.
#[test]
fn a_failed_start_leaves_no_process_behind() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = support::up_command(dir.path(), &ports)
        .env(
            "DATABASE_URL",
            format!("postgres://weft@127.0.0.1:{closed}/weft"),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("PostgreSQL"), "{stderr}");
    let pid: i32 = std::fs::read_to_string(dir.path().join("run/broker.pid"))
        .expect("the broker had started")
        .trim()
        .parse()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        // Gone, or a zombie waiting for init to reap it.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = state
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'));
        if !alive {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the broker (pid {pid}) outlived the failed start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Nobody listens there any more. (Binding the port again would also fail when some
    // other test's client connection happens to use it as its local port.)
    assert!(
        !listening_on(ports.broker),
        "something still listens on the broker's port {}",
        ports.broker
    );
}

/// Whether any socket on this machine is in the LISTEN state on `port`
/// (`/proc/net/tcp` and `tcp6`, state 0A).
fn listening_on(port: u16) -> bool {
    let local = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                cols.len() > 3 && cols[1].ends_with(&local) && cols[3] == "0A"
            })
    })
}

/// A data dir whose broker data is gone (a reset broker under existing databases):
/// `weft up` stops, naming the stale offsets and the way out, instead of silently
/// skipping new events; `weft up --reset-offsets earliest` starts and a new signup is
/// counted on top of the old ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_offsets_stop_weft_up_until_it_is_told_to_reset_them() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    // Signs `email` up, waits until analytics counts `signups` in all, and stops `up`.
    let count_and_stop = |up: Up, email: &'static str, signups: i64, what: &'static str| {
        let port = ports.user;
        let analytics = ports.analytics;
        async move {
            let request = grpc::sign_up_request(email, "Stale", SignupSource::Api);
            grpc::sign_up(port, request).await;
            weft_testkit::eventually(what, std::time::Duration::from_secs(60), || async {
                (grpc::metrics(analytics).await.signups == signups).then_some(())
            })
            .await;
            up.stop_async().await;
        }
    };
    let up = Up::start_async(dir.path(), &ports).await;
    count_and_stop(up, "before@example.com", 1, "the first signup counted").await;
    std::fs::remove_dir_all(dir.path().join("broker")).unwrap();

    let out = output_async(support::up_command(dir.path(), &ports)).await;
    let stderr = failed_saying("weft up", &out, None, "lies past the partition's end");
    assert!(stderr.contains("--reset-offsets earliest"), "{stderr}");
    // The service exits with 78 ("starting again would not help"): not restarted in vain.
    assert!(
        !stderr.contains("restarting it in")
            && (stderr.contains("asks not to be started again") || stderr.contains("status: 78")),
        "{stderr}"
    );

    let up = Up::start_env_async(dir.path(), &ports, &[("WEFT_RESET_OFFSETS", "earliest")]).await;
    count_and_stop(up, "after@example.com", 2, "the second signup counted").await;

    // Reset again, this time to the ends of the logs: the mesh starts, and what comes
    // next is counted once, on top.
    std::fs::remove_dir_all(dir.path().join("broker")).unwrap();
    let up = Up::start_env_async(dir.path(), &ports, &[("WEFT_RESET_OFFSETS", "latest")]).await;
    count_and_stop(up, "latest@example.com", 3, "the third signup counted").await;
}

/// `--replicas` above one on SQLite is refused before anything starts, saying why and
/// what to give instead; out-of-range counts and ports beyond 65535 are refused too.
#[test]
fn replicas_on_sqlite_or_beyond_the_ports_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let out = support::up_command(dir.path(), &ports)
        .args(["--replicas", "2"])
        .output()
        .unwrap();
    let says = "--replicas 2 needs PostgreSQL for user, order, notification, analytics";
    let stderr = failed_saying("--replicas 2", &out, Some(1), says);
    assert!(
        stderr.contains("share its database") && stderr.contains("--database-url postgres://"),
        "{stderr}"
    );
    assert!(!dir.path().join("broker").exists(), "nothing was started");
    assert!(!listening_on(ports.broker), "no broker was started");

    // One service on PostgreSQL is not enough: the others are named.
    let out = support::up_command(dir.path(), &ports)
        .args(["--replicas", "3"])
        .env("WEFT_USER_DATABASE_URL", "postgres://nobody@127.0.0.1:1/x")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--replicas 3 needs PostgreSQL for order, notification, analytics:"),
        "{stderr}"
    );

    for bad in ["0", "10", "two"] {
        let out = support::up_command(dir.path(), &ports)
            .args(["--replicas", bad])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "--replicas {bad}: {stderr}");
        assert!(stderr.contains("--replicas"), "{stderr}");
    }

    let out = support::up_command(dir.path(), &ports)
        .args(["--replicas", "2", "--replica-port-step", "65000"])
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/x")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("replica 2 would listen beyond port 65535")
            && stderr.contains("--replica-port-step 65000"),
        "{stderr}"
    );
}

/// `weft lag` without a mesh's databases says where it looked and what to give.
#[test]
fn lag_without_databases_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(WEFT)
        .args(["lag", "--data-dir"])
        .arg(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("WEFT_ORDER_DATABASE_URL")
        .output()
        .unwrap();
    let stderr = failed_saying("weft lag", &out, Some(1), "no order database at");
    assert!(
        stderr.contains(&dir.path().join("order.db").display().to_string())
            && stderr.contains("--database-url"),
        "{stderr}"
    );
    let out = Command::new(WEFT)
        .args(["lag", "--database-url", "not-a-url"])
        .output()
        .unwrap();
    let says = "DATABASE_URL must name a database";
    failed_saying("weft lag --database-url not-a-url", &out, Some(1), says);
}

/// The pid in `<data>/run/<name>.pid`, if the file is there.
fn pid_of(data: &std::path::Path, name: &str) -> Option<i32> {
    std::fs::read_to_string(data.join(format!("run/{name}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Waits until `check` gives a value, polling every 100 ms, or panics after `secs`.
fn wait_for<T>(what: &str, secs: u64, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {secs} s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// SIGKILLs the process `name` of the mesh under `data` and waits until the launcher
/// has started a new one that serves on `port`.
fn kill_and_wait_back(data: &std::path::Path, name: &str, port: u16) -> i32 {
    let before = pid_of(data, name).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(before),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for(&format!("{name} started again"), 60, || {
        pid_of(data, name)
            .filter(|p| *p != before)
            .filter(|_| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
    })
}

/// `weft up` on `data` with one restart allowed per 10 minutes and `env`, its output
/// in files under `dir`; returns once the mesh is up, with a reader of those files.
fn launch_with_one_restart(
    dir: &std::path::Path,
    data: &std::path::Path,
    ports: &Ports,
    env: &[(&str, &str)],
) -> (std::process::Child, std::path::PathBuf) {
    let (out_path, err_path) = (dir.join("out.txt"), dir.join("err.txt"));
    let launcher = support::up_command(data, ports)
        .env("WEFT_MAX_RESTARTS", "1")
        .env("WEFT_RESTART_WINDOW", "10m")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    wait_for("weft up", 120, || {
        read(&out_path).contains("weft is up").then_some(())
    });
    (launcher, err_path)
}

fn read(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// SIGKILLs `name`'s current process.
fn kill_now(data: &std::path::Path, name: &str) -> i32 {
    let pid = pid_of(data, name).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    pid
}

/// A service that crashes more often than the restart window allows is marked failed
/// and tried again later, while the launcher and the rest of the mesh go on serving.
#[test]
fn a_service_crashing_too_often_is_marked_failed_while_the_rest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ports = Ports::free();
    let (mut launcher, err_path) =
        launch_with_one_restart(dir.path(), &data, &ports, &[("WEFT_FAILED_RETRY", "3s")]);

    // The first crash is restarted at once; the second within the window marks it failed.
    kill_and_wait_back(&data, "analytics", ports.analytics);
    let second = kill_now(&data, "analytics");
    wait_for("the analytics service marked failed", 30, || {
        read(&err_path)
            .contains("the analytics service crashed 2 times within 10m: marked failed")
            .then_some(())
    });
    assert!(
        launcher.try_wait().unwrap().is_none(),
        "the launcher stopped: {}",
        read(&err_path)
    );
    for port in [ports.user, ports.order, ports.gateway] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "port {port} no longer served while analytics is failed"
        );
    }
    // Tried again after --failed-retry, it serves again.
    wait_for("the failed analytics service tried again", 60, || {
        pid_of(&data, "analytics")
            .filter(|p| *p != second)
            .filter(|_| std::net::TcpStream::connect(("127.0.0.1", ports.analytics)).is_ok())
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(launcher.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = launcher.wait().unwrap();
    assert!(
        status.success(),
        "weft up exited with {status}: {}",
        read(&err_path)
    );
}

/// With `--broker-fail-fast`, an embedded broker that crashes more often than the
/// restart window allows stops the whole mesh, with the reason, and nothing is left
/// listening. (Without it the broker is marked failed and tried again like any child.)
#[test]
fn a_crash_looping_broker_stops_the_mesh_when_asked_to_fail_fast() {
    broker_fails_fast(|data, ports| {
        kill_and_wait_back(data, "broker", ports.broker);
    });
}

/// The second crash may also come while the launcher is still waiting for the
/// restarted broker to listen: that counts as a crash too, and still stops the mesh.
#[test]
fn a_broker_killed_while_starting_again_still_stops_the_mesh_under_fail_fast() {
    broker_fails_fast(|data, _| {
        let before = pid_of(data, "broker").unwrap();
        kill_now(data, "broker");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while pid_of(data, "broker").is_none_or(|p| p == before) {
            assert!(
                std::time::Instant::now() < deadline,
                "the broker was not started again within 60 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    });
}

/// Starts a mesh with `--broker-fail-fast` and one restart allowed, lets `first_crash`
/// kill the broker once and wait for its new process, kills that one too, and checks
/// that the whole mesh stops with the reason and nothing left listening.
fn broker_fails_fast(first_crash: impl FnOnce(&std::path::Path, &Ports)) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ports = Ports::free();
    let (mut launcher, err_path) = launch_with_one_restart(
        dir.path(),
        &data,
        &ports,
        &[("WEFT_BROKER_FAIL_FAST", "true")],
    );
    // The first crash is restarted; the second within the window stops everything.
    first_crash(&data, &ports);
    kill_now(&data, "broker");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = launcher.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = launcher.kill();
            panic!(
                "the launcher did not stop within 60 s; its stderr:\n{}",
                read(&err_path)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let stderr = read(&err_path);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the embedded broker crashed 2 times within 10m (--broker-fail-fast)"),
        "{stderr}"
    );
    for port in [ports.broker, ports.user, ports.order, ports.gateway] {
        assert!(
            !listening_on(port),
            "port {port} still served after the mesh stopped"
        );
    }
}

/// The launcher starts its children from the executable it runs, not from the file it
/// was started from: after that file is replaced under the running mesh (as a rebuild
/// does), a crashed service still comes back.
#[test]
fn a_crashed_service_comes_back_after_the_weft_binary_was_replaced() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin/weft");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(WEFT, &bin).unwrap();
    let data = dir.path().join("data");
    let ports = Ports::free();
    let up = Up::spawn(
        support::up_command_of(&bin, &data, &ports),
        MeshBroker::new(BrokerKind::Embedded, &ports),
    );
    // A build removes the old file and writes another in its place.
    std::fs::remove_file(&bin).unwrap();
    std::fs::write(
        &bin,
        "#!/bin/sh\necho 'not the weft that runs' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();

    for (name, port) in [("order", ports.order), ("broker", ports.broker)] {
        let pid = kill_and_wait_back(&data, name, port);
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert!(
            exe.to_string_lossy().ends_with("(deleted)"),
            "{name} runs {}, not the launcher's own image",
            exe.display()
        );
    }
    up.stop();
}

/// `weft admin` says what is wrong and changes nothing: no user database where it
/// looks, a role that does not exist, an address no user has.
#[test]
fn weft_admin_failures_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let admin = |args: &[&str]| {
        let out = Command::new(WEFT)
            .arg("admin")
            .args(args)
            .arg("--data-dir")
            .arg(data)
            .env_remove("WEFT_USER_DATABASE_URL")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = admin(&["roles", "ada@example.com"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no user database at"), "{stderr}");
    assert!(!data.join("user.db").exists(), "nothing created");

    // An empty database (a mesh that never had a user).
    std::fs::write(data.join("user.db"), b"").unwrap();
    let (code, stderr) = admin(&["grant", "ada@example.com", "wizard"]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("\"wizard\" is not a role"), "{stderr}");
    for args in [
        &["grant", "nobody@example.com", "staff"][..],
        &["revoke", "nobody@example.com", "staff"][..],
        &["roles", "nobody@example.com"][..],
    ] {
        let (code, stderr) = admin(args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("no user has that email address"),
            "{args:?}: {stderr}"
        );
    }
    let (code, stderr) = admin(&["audit"]);
    assert_eq!(code, Some(0), "an empty audit is no error: {stderr}");
}

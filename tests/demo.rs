//! `weft demo` against `weft up`: the story step by step, then a short load with its
//! per-second lines and summary; and clear refusals of bad flags.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::{Ports, Up, WEFT};

fn demo(ports: &Ports, data_dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let addr = |port: u16| format!("127.0.0.1:{port}");
    Command::new(WEFT)
        .arg("demo")
        .args(["--user", &addr(ports.user)])
        .args(["--order", &addr(ports.order)])
        .args(["--analytics", &addr(ports.analytics)])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env_remove("WEFT_USER_DATABASE_URL")
        .output()
        .unwrap()
}

#[test]
fn the_demo_tells_the_story_and_loads_the_mesh() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let up = Up::start(dir.path(), &ports);
    let out = demo(
        &ports,
        dir.path(),
        &["--load", "--rate", "40/s", "--duration", "3s"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "signing up",
        "verifying the address",
        "waiting for the welcome order",
        "ordering 2 × mug + 1 × lamp",
        "paying",
        "staff ship the order",
        "waiting for the emails",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.contains(step))
            .unwrap_or_else(|| panic!("no step {step:?} in\n{stdout}"));
        assert!(line.contains("… ok ("), "{line}");
    }
    assert!(stdout.contains("total 109.97 USD"), "{stdout}");
    let seconds = stdout.lines().filter(|l| l.contains(" ok/s ")).count();
    assert!(seconds >= 2, "a line a second:\n{stdout}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary: "))
        .unwrap_or_else(|| panic!("no summary in\n{stdout}"));
    let requests: u64 = summary.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!((100..=130).contains(&requests), "{summary}");
    for op in ["signup", "order", "read"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with(op) && l.contains(" ok ")),
            "{op} in\n{stdout}"
        );
    }

    for (flags, says) in [
        (
            vec!["--load", "--skip-story", "--mix", "bogus=1"],
            "unknown operation",
        ),
        (
            vec!["--load", "--skip-story", "--mix", "read=0"],
            "at least one operation",
        ),
        (
            vec!["--load", "--skip-story", "--rate", "10000/s"],
            "is bounded",
        ),
        (
            vec!["--load", "--skip-story", "--duration", "2h"],
            "is bounded",
        ),
    ] {
        let out = demo(&ports, dir.path(), &flags);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(says),
            "{flags:?}: {stderr}"
        );
    }
    let out = Command::new(WEFT)
        .args(["demo", "--user", "192.0.2.1:5051", "--skip-story", "--load"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("not this machine"),
        "{stderr}"
    );
    up.stop();
}

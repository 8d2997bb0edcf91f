//! Proof that schema governance bites: `buf breaking` against the committed baseline
//! image rejects a removed field and a renumbered field, and accepts the tree as it is;
//! `buf lint` passes. Runs the real buf (installed by scripts/install-tools).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else if entry.path().extension().is_some_and(|e| e == "proto") {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of the module (buf.yaml + every .proto) with `edit` applied to one file.
fn workspace_with(file: &str, edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("buf.yaml"), dir.path().join("buf.yaml")).unwrap();
    copy_tree(&repo().join("proto/weft"), &dir.path().join("proto/weft"));
    copy_tree(
        &repo().join("proto/google"),
        &dir.path().join("proto/google"),
    );
    let path = dir.path().join("proto").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = edit(&text);
    assert_ne!(text, edited, "the edit changed nothing");
    std::fs::write(&path, edited).unwrap();
    dir
}

fn buf(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(weft_testkit::require_tool("buf"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn breaking(dir: &Path) -> (bool, String) {
    let baseline = repo().join("proto/baseline/image.binpb");
    buf(dir, &["breaking", "--against", baseline.to_str().unwrap()])
}

const EVENTS: &str = "weft/user/v1/user_events.proto";

#[test]
fn the_current_tree_is_not_breaking_and_lints_clean() {
    let dir = workspace_with(EVENTS, |t| {
        format!("{t}\n// an added comment is not a change\n")
    });
    let (ok, out) = breaking(dir.path());
    assert!(ok, "{out}");
    let (ok, out) = buf(&repo(), &["lint"]);
    assert!(ok, "{out}");
}

#[test]
fn a_removed_field_is_caught() {
    let dir = workspace_with(EVENTS, |t| t.replacen("  string name = 4;\n", "", 1));
    let (ok, out) = breaking(dir.path());
    assert!(!ok, "buf breaking accepted a removed field:\n{out}");
    assert!(out.contains("UserSignedUp"), "{out}");
    assert!(
        out.contains("deleted") || out.contains("FIELD_NO_DELETE"),
        "{out}"
    );
}

#[test]
fn a_renumbered_field_is_caught() {
    let dir = workspace_with(EVENTS, |t| {
        t.replacen("string email = 3;", "string email = 13;", 1)
    });
    let (ok, out) = breaking(dir.path());
    assert!(!ok, "buf breaking accepted a renumbered field:\n{out}");
    assert!(out.contains("UserSignedUp"), "{out}");
}

#[test]
fn a_lint_violation_is_caught() {
    let dir = workspace_with("weft/order/v1/order.proto", |t| {
        t.replacen("ORDER_STATUS_UNSPECIFIED = 0;", "ORDER_STATUS_NONE = 0;", 1)
    });
    let (ok, out) = buf(dir.path(), &["lint"]);
    assert!(!ok, "{out}");
    assert!(out.contains("ORDER_STATUS_NONE"), "{out}");
}

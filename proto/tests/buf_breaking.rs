//! Proof that schema governance bites: `buf breaking` against the committed baseline
//! image rejects a removed field and a renumbered field and accepts the tree as it is,
//! and `buf lint` passes. Runs the real buf (installed by scripts/install-tools); when
//! buf is missing these tests fail, they never skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use weft_testkit::tools;

/// The event file the tests edit, relative to the module root (`proto/`).
const EVENTS: &str = "weft/user/v1/user_events.proto";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn copy_protos(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_protos(&entry.path(), &target);
        } else if entry.path().extension().is_some_and(|e| e == "proto") {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of the buf workspace: `buf.yaml` and every `.proto` of the module, laid out
/// as in the repository so `buf.yaml`'s module path and ignores apply unchanged.
fn module_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("buf.yaml"), dir.path().join("buf.yaml")).unwrap();
    for sub in ["weft", "google"] {
        copy_protos(
            &repo().join("proto").join(sub),
            &dir.path().join("proto").join(sub),
        );
    }
    dir
}

/// [`module_copy`] with `edit` applied to `file` (relative to the module root).
fn module_copy_with(file: &str, edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = module_copy();
    let path = dir.path().join("proto").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = edit(&text);
    assert_ne!(text, edited, "the edit changed nothing in {file}");
    std::fs::write(&path, edited).unwrap();
    dir
}

/// Runs buf in `dir`; returns whether it succeeded and its stdout + stderr.
fn buf(dir: &Path, args: &[&str]) -> (bool, String) {
    tools::run(tools::tool("buf").args(args).current_dir(dir))
}

/// `buf breaking` of the workspace in `dir` against the committed baseline image,
/// one JSON object per violation.
fn breaking(dir: &Path) -> (bool, String) {
    let baseline = repo().join("proto/baseline/image.binpb");
    buf(
        dir,
        &[
            "breaking",
            "--against",
            baseline.to_str().unwrap(),
            "--error-format=json",
        ],
    )
}

/// Whether one reported violation has rule `rule` and mentions every one of `words`.
fn reports(out: &str, rule: &str, words: &[&str]) -> bool {
    out.lines().any(|line| {
        line.contains(&format!(r#""type":"{rule}""#)) && words.iter().all(|w| line.contains(w))
    })
}

#[test]
fn an_unmodified_copy_is_not_breaking() {
    let dir = module_copy();
    let (ok, out) = breaking(dir.path());
    assert!(ok, "buf breaking rejected the unmodified tree:\n{out}");
}

#[test]
fn buf_lint_passes_on_the_real_tree() {
    let (ok, out) = buf(&repo(), &["lint"]);
    assert!(ok, "buf lint failed:\n{out}");
}

/// `EVENTS` with its first `from` replaced by `to` no longer has UserSignedUp's field
/// `number`, named `name`: `buf breaking` must reject it as FIELD_NO_DELETE.
fn assert_field_lost(from: &str, to: &str, number: u32, name: &str) {
    let dir = module_copy_with(EVENTS, |t| t.replacen(from, to, 1));
    let (ok, out) = breaking(dir.path());
    assert!(!ok, "buf breaking accepted {from:?} → {to:?}:\n{out}");
    let field = format!(r#"field \"{number}\" with name \"{name}\""#);
    assert!(
        reports(&out, "FIELD_NO_DELETE", &[&field, "UserSignedUp"]),
        "expected FIELD_NO_DELETE for UserSignedUp field {number} ({name}), got:\n{out}"
    );
}

#[test]
fn a_removed_field_is_caught() {
    assert_field_lost("  string name = 4;\n", "", 4, "name");
}

#[test]
fn a_renumbered_field_is_caught() {
    assert_field_lost("string email = 3;", "string email = 13;", 3, "email");
}

#[test]
fn swapped_field_numbers_are_caught() {
    // Same fields, same types, numbers exchanged: old readers would silently read the
    // email as the name. Only the name/number pairing changed.
    let dir = module_copy_with(EVENTS, |t| {
        t.replacen("string email = 3;", "string email = @;", 1)
            .replacen("string name = 4;", "string name = 3;", 1)
            .replacen("string email = @;", "string email = 4;", 1)
    });
    let (ok, out) = breaking(dir.path());
    assert!(!ok, "buf breaking accepted swapped field numbers:\n{out}");
    assert!(
        reports(&out, "FIELD_SAME_NAME", &[r#"Field \"3\""#, "UserSignedUp"]),
        "expected FIELD_SAME_NAME for UserSignedUp field 3, got:\n{out}"
    );
}

#[test]
fn a_lint_violation_is_caught() {
    let dir = module_copy_with("weft/order/v1/order.proto", |t| {
        t.replacen("ORDER_STATUS_UNSPECIFIED = 0;", "ORDER_STATUS_NONE = 0;", 1)
    });
    let (ok, out) = buf(dir.path(), &["lint"]);
    assert!(
        !ok,
        "buf lint accepted a zero enum value without _UNSPECIFIED:\n{out}"
    );
    assert!(out.contains("ORDER_STATUS_NONE"), "{out}");
}

#[test]
fn an_added_field_and_an_added_event_type_are_not_breaking() {
    // What tests/clients.rs publishes to the clients built from the real tree: a new
    // field (number 1000) on UserSignedUp and a new event type.
    let dir = module_copy_with(EVENTS, |t| {
        let t = t.replacen(
            "  map<string, string> attributes = 7;\n",
            "  map<string, string> attributes = 7;\n  // Added later.\n  string added = 1000;\n",
            1,
        );
        format!(
            "{t}\n// Added later: a user chose a nickname.\nmessage UserNicknameChosen {{\n  // Event envelope.\n  weft.common.v1.EventMetadata metadata = 1;\n  // Id of the user.\n  string user_id = 2;\n  // The nickname.\n  string nickname = 3;\n}}\n"
        )
    });
    let (ok, out) = breaking(dir.path());
    assert!(ok, "buf breaking rejected an additive change:\n{out}");
    let (ok, out) = buf(dir.path(), &["lint"]);
    assert!(ok, "the additive change is not lint-clean:\n{out}");
}

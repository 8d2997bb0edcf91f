//! What the demo reads of the mails the notification service writes as `.eml` files
//! under `<data dir>/mail`: the verification token sent to an address, and how many
//! mails an address has had.

use std::path::Path;

/// The newest verification token mailed to `email` under `<data dir>/mail`.
pub(super) fn mailed_token(data_dir: &Path, email: &str) -> Option<String> {
    let mut mails: Vec<_> = std::fs::read_dir(data_dir.join("mail"))
        .ok()?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .collect();
    mails.sort_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
    mails.iter().rev().find_map(|e| {
        let text = std::fs::read_to_string(e.path()).ok()?;
        // Quoted-printable: join soft line breaks and undo `=3D` before reading.
        let text = text
            .replace("=\r\n", "")
            .replace("=\n", "")
            .replace("=3D", "=");
        if !text
            .lines()
            .any(|l| l.starts_with("To:") && l.contains(email))
        {
            return None;
        }
        let at = text.find("/verify?token=")? + "/verify?token=".len();
        let token: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            .collect();
        (!token.is_empty()).then_some(token)
    })
}

/// How many mails under `<data dir>/mail` are addressed to `email`.
pub(super) fn mails_to(data_dir: &Path, email: &str) -> usize {
    std::fs::read_dir(data_dir.join("mail"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_to_string(e.path())
                        .is_ok_and(|t| t.lines().any(|l| l.starts_with("To:") && l.contains(email)))
                })
                .count()
        })
        .unwrap_or(0)
}

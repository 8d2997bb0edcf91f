//! What the demo reads of the mails the notification service writes under
//! `<data dir>/mail` (a mailbox a day, or `.eml` files): the verification token sent
//! to an address, and how many mails an address has had.

use std::path::Path;

/// Every mail under `<data dir>/mail`, oldest first.
fn mails(data_dir: &Path) -> Vec<String> {
    weft_notification::mailbox::read_dir(&data_dir.join("mail")).unwrap_or_default()
}

/// Whether `mail` is addressed to `email`.
fn is_to(mail: &str, email: &str) -> bool {
    mail.lines()
        .any(|l| l.starts_with("To:") && l.contains(email))
}

/// The newest verification token mailed to `email` under `<data dir>/mail`.
pub(super) fn mailed_token(data_dir: &Path, email: &str) -> Option<String> {
    mails(data_dir).iter().rev().find_map(|mail| {
        // Quoted-printable: join soft line breaks and undo `=3D` before reading.
        let text = mail.replace("=\n", "").replace("=3D", "=");
        if !is_to(&text, email) {
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
    mails(data_dir).iter().filter(|m| is_to(m, email)).count()
}

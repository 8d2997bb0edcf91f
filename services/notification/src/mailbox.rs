//! Email as one mailbox file a day: `<dir>/<YYYY-MM-DD>.mbox` in the mboxrd format,
//! which mail clients open (`mutt -f`, Thunderbird's import). The day is the
//! notification's creation date (the message's `Date`, UTC), so a resend goes to the
//! file of the first send.
//!
//! A message costs one appending `write` to a file that is already open. One `.eml`
//! file per message costs creating an inode and renaming it, which under many
//! messages a second was most of the notification service's CPU.
//!
//! It keeps the promises of the `.eml` files:
//! - **a message recorded as sent is in the file**: it is appended before its
//!   delivery is recorded. Like the database's own commits (WAL with
//!   `synchronous = NORMAL`), the write is not `fsync`ed: it survives any crash of
//!   the process, and a crash of the machine can lose the last seconds of both;
//! - **a resend does not add it twice**: before appending, the transport reads what
//!   was appended since it last looked (by any process: replicas may share the
//!   directory) and skips a message whose `Message-ID` is already there. The check and
//!   the append hold an exclusive lock on the file, so replicas resending the same
//!   message append it once;
//! - **no torn message**: a file whose end is not a message's end (a machine crash in
//!   the middle of a write) is cut back to its last whole message when opened, so
//!   the resend writes the message whole.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lettre::Message;
use lettre::message::header;

use crate::transport::{MailTransport, SendError};

/// Days whose files stay open; older ones are closed (and reopened when a resend of
/// an old notification needs them).
const OPEN_DAYS: usize = 3;

/// lettre's messages appended to a mailbox a day under `dir`.
pub struct MailboxFiles {
    dir: PathBuf,
    days: Arc<Mutex<HashMap<String, DayFile>>>,
}

/// An open mailbox and the message ids read from it so far.
struct DayFile {
    file: File,
    ids: HashSet<String>,
    /// How far the file has been read for ids.
    scanned: u64,
}

impl MailboxFiles {
    /// Mail goes to `dir`, created when missing.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            days: Arc::default(),
        }
    }
}

#[async_trait]
impl MailTransport for MailboxFiles {
    async fn send(&self, id: &str, message: &Message) -> Result<(), SendError> {
        let day = message
            .headers()
            .get::<header::Date>()
            .map_or_else(SystemTime::now, SystemTime::from);
        let day = DateTime::<Utc>::from(day);
        let entry = entry(day, &message.formatted());
        let message_id = format!("<{id}@weft>");
        let (dir, days) = (self.dir.clone(), self.days.clone());
        tokio::task::spawn_blocking(move || {
            let mut days = days.lock().unwrap_or_else(PoisonError::into_inner);
            append_once(&dir, &mut days, day, &message_id, &entry)
        })
        .await
        .map_err(|e| SendError::Transient(format!("mailbox writer task failed: {e}")))?
        .map_err(|e| SendError::Transient(format!("writing the mailbox: {e}")))
    }

    fn describe(&self) -> String {
        format!("a mailbox a day (mbox) in {}", self.dir.display())
    }
}

/// Appends `entry` to the mailbox of `day` unless a message with `message_id` is
/// already in it.
fn append_once(
    dir: &Path,
    days: &mut HashMap<String, DayFile>,
    day: DateTime<Utc>,
    message_id: &str,
    entry: &[u8],
) -> std::io::Result<()> {
    let name = format!("{}.mbox", day.format("%Y-%m-%d"));
    if !days.contains_key(&name)
        && days.len() >= OPEN_DAYS
        && let Some(oldest) = days.keys().min().cloned()
    {
        days.remove(&oldest);
    }
    let mailbox = match days.entry(name) {
        Entry::Occupied(open) => open.into_mut(),
        Entry::Vacant(day) => {
            std::fs::create_dir_all(dir)?;
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(dir.join(day.key()))?;
            day.insert(DayFile {
                file,
                ids: HashSet::new(),
                scanned: 0,
            })
        }
    };
    mailbox.file.lock()?;
    let appended = mailbox.append_once(message_id, entry);
    mailbox.file.unlock()?;
    appended
}

impl DayFile {
    /// Under the file's lock: reads what others appended, then appends `entry` if
    /// `message_id` is new.
    fn append_once(&mut self, message_id: &str, entry: &[u8]) -> std::io::Result<()> {
        let len = self.file.metadata()?.len();
        if len < self.scanned {
            // Cut back (a torn end, or replaced): read it again from the start.
            self.ids.clear();
            self.scanned = 0;
        }
        if len > self.scanned {
            let mut fresh = Vec::with_capacity((len - self.scanned) as usize);
            self.file.seek(SeekFrom::Start(self.scanned))?;
            (&self.file)
                .take(len - self.scanned)
                .read_to_end(&mut fresh)?;
            let whole = whole_messages(&fresh)?;
            if whole < fresh.len() {
                self.file.set_len(self.scanned + whole as u64)?;
                tracing::warn!(
                    cut = fresh.len() - whole,
                    "a mailbox ended inside a message (a crash while writing); cut back to its last whole message"
                );
            }
            self.ids.extend(message_ids(&fresh[..whole]));
            self.scanned += whole as u64;
        }
        if self.ids.contains(message_id) {
            return Ok(());
        }
        self.file.write_all(entry)?;
        self.scanned += entry.len() as u64;
        self.ids.insert(message_id.to_owned());
        Ok(())
    }
}

/// `message` (RFC 5322, CRLF lines) as an mboxrd entry: a `From ` line with its
/// date, the message with LF line ends and `From ` lines quoted with one more `>`,
/// and a blank line.
fn entry(date: DateTime<Utc>, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    out.extend_from_slice(format!("From weft {}\n", date.format("%a %b %e %T %Y")).as_bytes());
    let text = message.strip_suffix(b"\r\n").unwrap_or(message);
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if unquoted(line).starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// `line` without the `>`s that mboxrd puts before a `From ` line.
fn unquoted(line: &[u8]) -> &[u8] {
    let quotes = line.iter().take_while(|&&b| b == b'>').count();
    &line[quotes..]
}

/// How many leading bytes of `text`, read from an entry's start, are whole entries:
/// all of it when it ends with the blank line that ends an entry, else up to the
/// start of its last (torn) entry. An error when it does not begin with an entry: the
/// file is not a mailbox this transport wrote, and it is left as it is.
fn whole_messages(text: &[u8]) -> std::io::Result<usize> {
    if !text.starts_with(b"From ") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not an mbox file (it does not begin with a `From ` line); move it out of the mail directory",
        ));
    }
    if text.ends_with(b"\n\n") {
        return Ok(text.len());
    }
    let last = text
        .windows(7)
        .rposition(|w| w == b"\n\nFrom ")
        .map_or(0, |at| at + 2);
    Ok(last)
}

/// The `Message-ID`s in the headers of the entries of `text`.
fn message_ids(text: &[u8]) -> impl Iterator<Item = String> + '_ {
    let mut in_headers = false;
    text.split(|&b| b == b'\n').filter_map(move |line| {
        if line.starts_with(b"From ") {
            in_headers = true;
        } else if line.is_empty() {
            in_headers = false;
        } else if in_headers && line.len() > 11 && line[..11].eq_ignore_ascii_case(b"message-id:") {
            return Some(String::from_utf8_lossy(line[11..].trim_ascii()).into_owned());
        }
        None
    })
}

/// Every message under `dir`, oldest file first (by when it was last written, then
/// by name): the entries of its `.mbox` files (unquoted, with LF line ends) and its
/// `.eml` files. For the demo and the tests, which read what was sent.
pub fn read_dir(dir: &Path) -> std::io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if !path.extension().is_some_and(|x| x == "mbox" || x == "eml") {
            continue;
        }
        match std::fs::metadata(&path).and_then(|m| m.modified()) {
            Ok(modified) => files.push((modified, path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    files.sort();
    let mut messages = Vec::new();
    for (_, path) in files {
        match path.extension().and_then(|x| x.to_str()) {
            Some("mbox") => messages.extend(split_mbox(&std::fs::read(&path)?)),
            Some("eml") => {
                messages.push(String::from_utf8_lossy(&std::fs::read(&path)?).replace("\r\n", "\n"))
            }
            _ => {}
        }
    }
    Ok(messages)
}

/// The messages of an mboxrd file, unquoted.
pub fn split_mbox(text: &[u8]) -> Vec<String> {
    let mut messages = Vec::new();
    let mut current: Option<String> = None;
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    for line in text.split(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            messages.extend(current.take());
            current = Some(String::new());
            continue;
        }
        let Some(message) = current.as_mut() else {
            continue;
        };
        let line = if line.first() == Some(&b'>') && unquoted(line).starts_with(b"From ") {
            &line[1..]
        } else {
            line
        };
        message.push_str(&String::from_utf8_lossy(line));
        message.push('\n');
    }
    messages.extend(current);
    // Each entry ends with the blank line that separates it from the next.
    for message in &mut messages {
        if message.ends_with("\n\n") {
            message.pop();
        }
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, body: &str) -> Message {
        Message::builder()
            .from("weft <noreply@weft.example>".parse().unwrap())
            .to("ada@example.com".parse().unwrap())
            .subject("Hello")
            .message_id(Some(format!("<{id}@weft>")))
            .date(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_765_000_000))
            .body(body.to_owned())
            .unwrap()
    }

    #[tokio::test]
    async fn messages_append_to_the_day_of_their_date_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let mail = MailboxFiles::new(dir.path().to_owned());
        mail.send("n1", &message("n1", "first")).await.unwrap();
        mail.send("n2", &message("n2", "From the shop\n>From quoted\n"))
            .await
            .unwrap();
        mail.send("n1", &message("n1", "first")).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(files, ["2025-12-06.mbox"]);
        let raw = std::fs::read_to_string(dir.path().join("2025-12-06.mbox")).unwrap();
        assert!(
            raw.starts_with("From weft Sat Dec  6 05:46:40 2025\n"),
            "{raw}"
        );
        assert!(raw.contains("\n>From the shop\n>>From quoted\n"), "{raw}");
        let read = read_dir(dir.path()).unwrap();
        assert_eq!(read.len(), 2, "{read:?}");
        assert!(
            read[0].contains("Message-ID: <n1@weft>") && read[0].ends_with("first\n"),
            "{}",
            read[0]
        );
        assert!(
            read[1].contains("\nFrom the shop\n>From quoted\n"),
            "{}",
            read[1]
        );
    }

    #[tokio::test]
    async fn a_second_writer_sees_what_the_first_appended() {
        let dir = tempfile::tempdir().unwrap();
        let (one, two) = (
            MailboxFiles::new(dir.path().to_owned()),
            MailboxFiles::new(dir.path().to_owned()),
        );
        one.send("n1", &message("n1", "x")).await.unwrap();
        two.send("n2", &message("n2", "y")).await.unwrap();
        one.send("n2", &message("n2", "y")).await.unwrap();
        two.send("n1", &message("n1", "x")).await.unwrap();
        assert_eq!(read_dir(dir.path()).unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_torn_end_is_cut_back_and_the_resend_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let first = MailboxFiles::new(dir.path().to_owned());
        first.send("n1", &message("n1", "kept")).await.unwrap();
        let whole = entry(
            DateTime::<Utc>::from(
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_765_000_000),
            ),
            &message("n2", "torn").formatted(),
        );
        let path = dir.path().join("2025-12-06.mbox");
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&whole[..whole.len() / 2]).unwrap();
        drop(file);
        let restarted = MailboxFiles::new(dir.path().to_owned());
        restarted.send("n2", &message("n2", "torn")).await.unwrap();
        let read = read_dir(dir.path()).unwrap();
        assert_eq!(read.len(), 2, "{read:?}");
        assert!(
            read[1].contains("<n2@weft>") && read[1].ends_with("torn\n"),
            "{}",
            read[1]
        );
    }

    #[test]
    fn only_a_torn_last_entry_is_cut_and_a_foreign_file_is_refused() {
        assert_eq!(whole_messages(b"From a\nx\n\nFrom b\ny").unwrap(), 10);
        assert_eq!(whole_messages(b"From a\nx\n\n").unwrap(), 10);
        assert_eq!(whole_messages(b"From a\nx").unwrap(), 0);
        let err = whole_messages(b"garbage\n\n").unwrap_err();
        assert!(err.to_string().contains("not an mbox file"), "{err}");
    }

    #[tokio::test]
    async fn a_foreign_file_of_the_day_is_left_alone_and_the_send_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("2025-12-06.mbox");
        std::fs::write(&path, "my notes\n").unwrap();
        let mail = MailboxFiles::new(dir.path().to_owned());
        let err = mail.send("n1", &message("n1", "x")).await.unwrap_err();
        assert!(
            matches!(&err, SendError::Transient(m) if m.contains("not an mbox file")),
            "{err:?}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "my notes\n");
    }
}

//! One launcher per data dir: `weft up` holds an exclusive lock on
//! `<data dir>/run/weft-up.lock` (the kernel drops it when the process dies, however it
//! dies) for its whole life, with its pid inside. A second launcher on the same data
//! dir is refused at once, naming the running one, before it starts or writes anything
//! else: the pid files under `run/` keep naming the running mesh's processes.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::Path;

use anyhow::{Context as _, bail};

/// The lock, held while this value lives.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Takes the data dir's launcher lock, or says which launcher holds it.
pub fn take(data_dir: &Path) -> anyhow::Result<RunLock> {
    let run = data_dir.join("run");
    std::fs::create_dir_all(&run).with_context(|| format!("creating {}", run.display()))?;
    let path = run.join("weft-up.lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            writeln!(file, "{}", std::process::id())?;
            Ok(RunLock { _file: file })
        }
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            let (who, stop) = if pid.is_empty() {
                ("weft up".to_owned(), "stop it first".to_owned())
            } else {
                (
                    format!("weft up, pid {pid}"),
                    format!("stop it first (Ctrl-C in its terminal, or kill {pid})"),
                )
            };
            bail!(
                "a mesh already runs on the data dir {} ({who}); {stop}, or give this one another --data-dir",
                data_dir.display()
            )
        }
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

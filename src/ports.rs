//! Before `weft up` starts anything: every port it will listen on must be free. A
//! port that is taken is named with the process that holds it (from `/proc`), so the
//! launcher never mistakes someone else's listener for its own broker or service.

use std::net::SocketAddr;

use anyhow::bail;

/// One listener the mesh needs: what it is for, the flag that moves it, and where.
pub struct Wanted {
    /// What listens there, e.g. "the embedded broker".
    pub what: String,
    /// The flag that chooses another port, e.g. `--broker-port`.
    pub flag: &'static str,
    /// The address to be bound.
    pub addr: SocketAddr,
}

/// `Ok` when every address can be bound (the way the services bind: with
/// `SO_REUSEADDR`, so connections lingering in TIME-WAIT do not count); else one
/// error naming each taken port and, where `/proc` tells, its holder.
pub fn check_free(wanted: &[Wanted]) -> anyhow::Result<()> {
    let mut taken = Vec::new();
    for w in wanted {
        if let Err(e) = try_bind(w.addr) {
            let holder = holder_of(w.addr.port())
                .map(|(pid, name)| format!(" by pid {pid} ({name})"))
                .unwrap_or_default();
            taken.push(format!(
                "  {} ({}) is taken{holder}: {e}; stop that process or choose another port with {}",
                w.addr, w.what, w.flag
            ));
        }
    }
    if taken.is_empty() {
        Ok(())
    } else {
        bail!(
            "cannot start: {} of the mesh's ports {} not free\n{}",
            taken.len(),
            if taken.len() == 1 { "is" } else { "are" },
            taken.join("\n")
        )
    }
}

fn try_bind(addr: SocketAddr) -> std::io::Result<()> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1)
}

/// The process listening on TCP `port` (pid, command name), when `/proc` shows it.
fn holder_of(port: u16) -> Option<(u32, String)> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| listening_inode(line, port))
                .collect::<Vec<_>>()
        })
        .collect();
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if inodes
                .iter()
                .any(|inode| target == format!("socket:[{inode}]"))
            {
                let name = std::fs::read_to_string(entry.path().join("comm"))
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_else(|_| "?".to_owned());
                return Some((pid, name));
            }
        }
    }
    None
}

/// The socket inode of a `/proc/net/tcp` line when it is a listener on `port`.
fn listening_inode(line: &str, port: u16) -> Option<String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let local = fields.get(1)?;
    let state = fields.get(3)?;
    let inode = fields.get(9)?;
    let local_port = u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()?;
    // 0A is TCP_LISTEN.
    (local_port == port && *state == "0A").then(|| (*inode).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_named_with_its_holder() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = check_free(&[
            Wanted {
                what: "the embedded broker".to_owned(),
                flag: "--broker-port",
                addr,
            },
            Wanted {
                what: "the user service".to_owned(),
                flag: "--user-port",
                addr: free,
            },
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains(&addr.to_string()), "{err}");
        assert!(err.contains("--broker-port"), "{err}");
        assert!(
            err.contains(&format!("by pid {}", std::process::id())),
            "{err}"
        );
        assert!(!err.contains(&free.to_string()), "{err}");
        drop(held);
        assert!(
            check_free(&[Wanted {
                what: "x".to_owned(),
                flag: "--x",
                addr
            }])
            .is_ok()
        );
    }

    #[test]
    fn proc_net_tcp_lines_are_read() {
        let line = "   0: 0100007F:2384 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0";
        assert_eq!(listening_inode(line, 0x2384).as_deref(), Some("12345"));
        assert_eq!(listening_inode(line, 9093), None);
        let established = line.replace(" 0A ", " 01 ");
        assert_eq!(listening_inode(&established, 0x2384), None);
    }
}

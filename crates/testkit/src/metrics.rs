//! A service's Prometheus text as a test reads it: fetched from its admin listener
//! ([`scrape_metrics`]) and one unlabelled sample looked up by name ([`metric`]).

use std::net::SocketAddr;

/// The text the admin listener at `admin` answers to `GET /metrics` (with the HTTP
/// head); an error when it cannot be reached.
pub async fn scrape_metrics(admin: SocketAddr) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut conn = tokio::net::TcpStream::connect(admin).await?;
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut text = String::new();
    conn.read_to_string(&mut text).await?;
    Ok(text)
}

/// The value of the first unlabelled sample `name` in Prometheus `text`; none when
/// there is no such line.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::metric;

    #[test]
    fn a_sample_is_found_by_its_whole_name() {
        let text = "outbox_backlog_max 9\noutbox_backlog 2\n# HELP x\nx{a=\"b\"} 1\n";
        assert_eq!(metric(text, "outbox_backlog"), Some(2.0));
        assert_eq!(metric(text, "outbox_backlog_max"), Some(9.0));
        assert_eq!(metric(text, "x"), None, "labelled samples are not read");
        assert_eq!(metric(text, "missing"), None);
    }
}

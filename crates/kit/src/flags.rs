//! Value parsers for command-line flags, shared by every process's configuration.

/// A flag's duration that must be above zero (`500ms`, `10m`): a value parser for
/// clap.
pub fn positive_duration(text: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be above zero".to_owned());
    }
    Ok(d)
}

//! Command-line flags of the bench binaries: `--name VALUE`, with a default.

use anyhow::{Context, Result};

/// The value after `name` on the command line, or `default`.
pub fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => {
            let value = args
                .get(i + 1)
                .with_context(|| format!("{name} takes a value"))?;
            value.parse().with_context(|| format!("{name} {value}"))
        }
    }
}

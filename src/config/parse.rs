//! Reads a TOML config into typed `Config`, collecting every error with its place.
//! (Being written; this stub keeps the crate compiling.)
use super::Config;

#[derive(Debug, Clone)]
pub struct ConfigError {
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct ConfigErrors {
    pub origin: String,
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    pub fn single(origin: &str, message: String) -> Self {
        ConfigErrors { origin: origin.to_string(), errors: vec![ConfigError { message }] }
    }
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for e in &self.errors {
            writeln!(f, "{}: {}", self.origin, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
impl ConfigErrors {
    pub fn len(&self) -> usize {
        self.errors.len()
    }
}

pub fn parse(_text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    Err(ConfigErrors::single(origin, "config parsing not written yet".into()))
}

//! Remote configuration: a config central publishes on `{root}/config/set` (docs/mqtt.md).
//!
//! The uplink hands it to the daemon, which checks it exactly as `outpost config check` does
//! (plus what must not change remotely), applies it as a reload does (listeners bound before
//! anything switches), and watches it for `uplink.config_rollback_after`: every listener bound
//! and the uplink connected on the new settings. Healthy, it is written over the config file
//! (the previous one kept as `<file>.last-good`); not healthy in time, the previous config is
//! applied again. Nothing is written until the new config has proved itself, so a crash while
//! it is watched restarts on the old one.

pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::current::Current;
use crate::envelope::{now_ms, rfc3339};

/// A configuration from central.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ConfigSet {
    pub version: String,
    pub hash: String,
    pub toml: String,
    #[serde(default)]
    pub from: Option<String>,
}

/// Where a config from central stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigState {
    /// Applied and being watched.
    Applying,
    /// Healthy and kept (written over the config file).
    Applied,
    /// Refused before anything changed.
    Rejected,
    /// Applied, found unhealthy or unsaveable, and the previous config applied again.
    RolledBack,
}

/// What became of a config from central: `{root}/config/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigStatus {
    pub v: u32,
    pub version: String,
    pub hash: String,
    pub status: ConfigState,
    pub at: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl ConfigStatus {
    pub fn new(set: &ConfigSet, status: ConfigState, errors: Vec<String>) -> ConfigStatus {
        ConfigStatus {
            v: 1,
            version: set.version.clone(),
            hash: set.hash.clone(),
            status,
            at: rfc3339(now_ms()),
            errors,
        }
    }
}

/// The uplink's side: where to hand configs, and the status to publish (retained).
#[derive(Clone)]
pub struct RemoteHandle {
    pub tx: mpsc::Sender<ConfigSet>,
    pub status: tokio::sync::watch::Receiver<Option<ConfigStatus>>,
    /// The version central gave the running config, or `local`.
    pub version: Arc<Current<String>>,
}

pub use crate::config::text_hash as hash;

/// Checks a config from central against the running one. `file` is the config file it would
/// replace (`None` when running on the embedded default).
pub fn validate(set: &ConfigSet, running: &Config, file: Option<&Path>) -> Result<Config, Vec<String>> {
    let actual = hash(&set.toml);
    if !actual.eq_ignore_ascii_case(set.hash.trim()) {
        return Err(vec![format!(
            "hash mismatch: the toml hashes to {actual}, the message says {}; the config was altered or \
             truncated on the way, publish it again",
            set.hash
        )]);
    }
    let Some(file) = file else {
        return Err(vec![
            "this gateway runs on its embedded default config; start it with --config FILE \
                         so that a remote config has a file to replace"
                .to_string(),
        ]);
    };
    let name = file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "outpost.toml".into());
    let new = Config::parse(&set.toml, &name).map_err(|errors| errors.messages())?;
    let mut errors = Vec::new();
    if new.node.site != running.node.site || new.node.id != running.node.id {
        errors.push(format!(
            "node.site and node.id must stay {:?} and {:?}: they name this gateway's topics; change them \
             on the gateway itself",
            running.node.site, running.node.id
        ));
    }
    if new.node.state_dir != running.node.state_dir
        || new.control != running.control
        || new.journal.path != running.journal.path
    {
        errors.push(
            "node.state_dir, [control] and journal.path cannot change remotely (they need a restart on the \
             gateway); keep them as they are"
                .to_string(),
        );
    }
    match &new.uplink {
        None => errors.push(
            "the config has no [uplink]: applying it would cut this gateway off from central; keep [uplink]"
                .to_string(),
        ),
        Some(u) if !u.remote_config => errors.push(
            "uplink.remote_config = false would refuse every later remote config; set it remotely only if \
             that is meant, on the gateway itself"
                .to_string(),
        ),
        Some(_) => {}
    }
    if errors.is_empty() { Ok(new) } else { Err(errors) }
}

/// Where the version of the file's config (given by central) is kept.
fn version_file(state_dir: &Path) -> PathBuf {
    state_dir.join("remote-config.json")
}

#[derive(Serialize, Deserialize)]
struct Applied {
    version: String,
    hash: String,
    status: Option<ConfigStatus>,
}

/// The running config's version: central's, when the config is the one central last applied.
pub fn load_version(state_dir: &Path, running_hash: &str) -> (String, Option<ConfigStatus>) {
    let Ok(text) = std::fs::read_to_string(version_file(state_dir)) else { return ("local".into(), None) };
    match serde_json::from_str::<Applied>(&text) {
        Ok(a) if a.hash == running_hash => (a.version, a.status),
        Ok(a) => ("local".into(), a.status),
        Err(_) => ("local".into(), None),
    }
}

/// A file this module could not write.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", .path.display())]
pub struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Makes the config from central the file's config: the previous text is kept as
/// `<file>.last-good`, the new one written atomically, and its version recorded.
pub fn commit(
    file: &Path,
    previous: &str,
    set: &ConfigSet,
    status: &ConfigStatus,
    state_dir: &Path,
) -> Result<(), WriteError> {
    let last_good = PathBuf::from(format!("{}.last-good", file.display()));
    write_atomic(&last_good, previous.as_bytes())?;
    write_atomic(file, set.toml.as_bytes())?;
    let applied = Applied { version: set.version.clone(), hash: set.hash.clone(), status: Some(status.clone()) };
    write_atomic(&version_file(state_dir), &serde_json::to_vec_pretty(&applied).unwrap_or_default())
}

/// Records the last status (so a restart still answers a repeated config with it).
pub fn remember_status(state_dir: &Path, version: &str, running_hash: &str, status: &ConfigStatus) {
    let applied =
        Applied { version: version.to_string(), hash: running_hash.to_string(), status: Some(status.clone()) };
    let _ = write_atomic(&version_file(state_dir), &serde_json::to_vec_pretty(&applied).unwrap_or_default());
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    crate::atomic_file::replace(path, bytes).map_err(|source| WriteError { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[node]
site = "northfield"
id = "gw-01"
state_dir = "/tmp/outpost-remote-test"

[uplink]
url = "mqtt://127.0.0.1:1883"

[[source]]
name = "ehr"
kind = "mllp"
listen = "127.0.0.1:2575"
"#;

    fn set(toml: &str) -> ConfigSet {
        ConfigSet { version: "v2".into(), hash: hash(toml), toml: toml.into(), from: None }
    }

    #[test]
    fn accepts_a_valid_config_and_checks_the_hash() {
        let running = Config::parse(BASE, "x").unwrap();
        let new = BASE.replace("2575", "2576");
        assert!(validate(&set(&new), &running, Some(Path::new("/etc/outpost/outpost.toml"))).is_ok());
        let mut bad = set(&new);
        bad.hash = hash("something else");
        let errs = validate(&bad, &running, Some(Path::new("/x.toml"))).unwrap_err();
        assert!(errs[0].contains("hash mismatch"), "{errs:?}");
    }

    #[test]
    fn reports_every_config_error_with_its_place() {
        let running = Config::parse(BASE, "x").unwrap();
        let new = format!("{BASE}\nbogus = 1\n[[route]]\nname = \"r\"\nfrom = [\"ehr\"]\nto = [\"nowhere\"]\n");
        let errs = validate(&set(&new), &running, Some(Path::new("/etc/outpost/outpost.toml"))).unwrap_err();
        assert!(errs.len() >= 2, "{errs:?}");
        assert!(errs.iter().all(|e| e.starts_with("outpost.toml:")), "{errs:?}");
    }

    #[test]
    fn refuses_what_must_not_change_remotely() {
        let running = Config::parse(BASE, "x").unwrap();
        let file = Some(Path::new("/x.toml"));
        let moved = BASE.replace("gw-01", "gw-02");
        assert!(validate(&set(&moved), &running, file).unwrap_err()[0].contains("node.site and node.id"));
        let cut_off = BASE.replace("[uplink]\nurl = \"mqtt://127.0.0.1:1883\"", "");
        assert!(validate(&set(&cut_off), &running, file).unwrap_err()[0].contains("no [uplink]"));
        assert!(validate(&set(BASE), &running, None).unwrap_err()[0].contains("embedded default"));
    }
}

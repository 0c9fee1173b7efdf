//! Replacing a file so that a crash or a concurrent reader never sees half of it: the config
//! written by `outpost init` and by remote configuration, the applied-version record.

use std::path::{Path, PathBuf};

/// Replaces `path` atomically: a temporary file beside it, synced, renamed over it, the
/// directory synced; a reader sees the old file or the new one, never half of one. A file that
/// exists keeps its mode and group; a new one is `0640`, in the group of its directory
/// (`outpost` for `/etc/outpost`, set up by the package), so the service can read it and other
/// users cannot (a config may name credentials).
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let (mode, gid) = match std::fs::metadata(path) {
        Ok(m) => (m.mode() & 0o7777, m.gid()),
        Err(_) => (0o640, std::fs::metadata(&dir)?.gid()),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    // Left by a crash of an earlier writer with the same pid, if ever.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        // Only root may give a file to another group; anyone else keeps their own.
        let _ = nix::unistd::fchown(&f, None, Some(nix::unistd::Gid::from_raw(gid)));
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_replaces_atomically_and_keeps_the_mode_of_the_file_it_replaces() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outpost.toml");
        replace(&path, b"[node]\n").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        replace(&path, b"[node]\nsite = \"x\"\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[node]\nsite = \"x\"\n");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }
}

//! Replacing a file so that a crash or a concurrent reader never sees half of it: the config
//! written by `outpost init` and by remote configuration, the applied-version record; and a
//! private file a tech exports (`fax export`).

use std::path::{Path, PathBuf};

/// Replaces `path` atomically: a temporary file beside it, synced, renamed over it, the
/// directory synced; a reader sees the old file or the new one, never half of one. A file that
/// exists keeps its mode and group; a new one is `0640`, in the group of its directory
/// (`outpost` for `/etc/outpost`, set up by the package), so the service can read it and other
/// users cannot (a config may name credentials).
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let (dir, tmp) = beside(path);
    std::fs::create_dir_all(&dir)?;
    let (mode, gid) = match std::fs::metadata(path) {
        Ok(m) => (m.mode() & 0o7777, m.gid()),
        Err(_) => (0o640, std::fs::metadata(&dir)?.gid()),
    };
    let result = (|| {
        let f = write_new(&tmp, bytes)?;
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

/// Writes `bytes` to `path` as a new file of mode 0600 (patient data a tech exported), the same
/// way: a replaced file's mode is not kept. Without `force` an existing `path` is left alone
/// (`AlreadyExists`), even one that appears meanwhile.
pub fn create_private(path: &Path, bytes: &[u8], force: bool) -> std::io::Result<()> {
    let (_, tmp) = beside(path);
    let result = (|| {
        drop(write_new(&tmp, bytes)?);
        if force {
            return std::fs::rename(&tmp, path);
        }
        // A hard link fails if the name exists; filesystems without links (a FAT USB stick)
        // fall back to checking first.
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
            Err(_) if std::fs::symlink_metadata(path).is_ok() => Err(std::io::ErrorKind::AlreadyExists.into()),
            Err(_) => std::fs::rename(&tmp, path),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

/// The folder `path` is in, and a temporary name beside it for this process.
fn beside(path: &Path) -> (PathBuf, PathBuf) {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    (dir, tmp)
}

/// A new file of mode 0600 at `tmp` (one left by a crash of an earlier writer with the same pid
/// is removed first), holding `bytes`, synced.
fn write_new(tmp: &Path, bytes: &[u8]) -> std::io::Result<std::fs::File> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(f)
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

    #[test]
    fn exports_are_private_and_kept_unless_forced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fax.tif");
        create_private(&path, b"one", false).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let e = create_private(&path, b"two", false).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        create_private(&path, b"two", true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "a replaced file too");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }
}

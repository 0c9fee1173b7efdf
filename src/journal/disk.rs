//! Free space on the journal's filesystem: what `journal.min_free_disk` is measured against
//! (the writer refuses new items below it, escalation warns near it, telemetry reports it).

use std::path::Path;

/// The directory a journal file lives in (`.` for a bare file name).
pub(super) fn dir_of(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Bytes available to unprivileged processes on the filesystem holding `dir`; `None` when the
/// filesystem cannot be asked.
// The fields are u32 on 32-bit ARM (armv7) and u64 elsewhere; widen before multiplying, or a
// disk over 4 GiB overflows there.
#[allow(clippy::useless_conversion)]
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(u64::from(s.blocks_available()).saturating_mul(u64::from(s.fragment_size())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_lives_in_its_parent_directory_or_the_current_one() {
        assert_eq!(dir_of(Path::new("/var/lib/outpost/journal.db")), Path::new("/var/lib/outpost"));
        assert_eq!(dir_of(Path::new("state/journal.db")), Path::new("state"));
        assert_eq!(dir_of(Path::new("journal.db")), Path::new("."));
    }

    #[test]
    fn free_space_is_read_where_it_can_be() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).is_some_and(|free| free > 0));
        assert_eq!(free_bytes(&dir.path().join("missing")), None);
    }
}

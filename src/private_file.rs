//! Writing files that hold secrets (signing keys, password hashes): mode
//! 0600, replaced atomically through a temp file beside them.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` with mode 0600: into `<path>.tmp` first, synced,
/// then renamed over `path`, so that a reader sees the old or the new file
/// whole, and a crash leaves at most the temp file behind.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        // A temp file left by an older version may have other permissions.
        #[cfg(unix)]
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_file_whole_and_private() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sub").join("users.toml");
        super::write(&path, b"first").expect("write");
        std::fs::write(dir.path().join("sub").join("users.tmp"), "stale").expect("stale tmp");
        super::write(&path, b"second").expect("rewrite");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "second");
        assert!(!dir.path().join("sub").join("users.tmp").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}

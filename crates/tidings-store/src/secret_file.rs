//! Secret files (keys) in a data directory: readable by their owner only, and never seen
//! half-written.

use std::path::Path;

/// Writes a file only its owner can read, atomically: a new temporary file created with
/// mode 0600 (never an old one reused with other permissions), then renamed over `path`.
pub fn write(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600));
    let mut file = builder.prefix(".tidings-secret").tempfile_in(dir)?;
    file.write_all(contents.as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(path).map(drop).map_err(|e| e.error)
}

//! The host's data directory and the account key in it (`privatekey.wif`, 0600, dir 0700).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use bitwrk_protocol::PrivateKey;

/// File name of the key inside the data dir.
pub const KEY_FILE: &str = "privatekey.wif";

/// `--data-dir`, else `BITWRK_DATA_DIR` (clap reads it), else `~/.bitwrk-host`.
pub fn resolve(flag: Option<PathBuf>) -> PathBuf {
    flag.unwrap_or_else(|| {
        let home =
            std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".bitwrk-host")
    })
}

/// Create the data dir (0700) if missing.
pub fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        fs::create_dir_all(dir).with_context(|| format!("creating data dir {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("setting mode 0700 on {}", dir.display()))?;
    }
    Ok(())
}

/// Load the account key, creating it on first use. A file that is there but is not a
/// valid compressed WIF is an error and is never overwritten.
pub fn load_or_create_key(dir: &Path) -> anyhow::Result<PrivateKey> {
    ensure_dir(dir)?;
    let path = dir.join(KEY_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let key = PrivateKey::from_wif(text.trim()).with_context(|| {
                format!(
                    "{} is not a valid WIF private key (the file was left as it is)",
                    path.display()
                )
            })?;
            if !key.is_compressed() {
                bail!(
                    "{} holds an uncompressed WIF key; bitwrk accounts are compressed-key addresses \
                     (the file was left as it is)",
                    path.display()
                );
            }
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = PrivateKey::generate();
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            writeln!(f, "{}", key.to_wif())?;
            f.sync_all()?;
            tracing::info!(address = %key.address(), path = %path.display(), "created a new account key");
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

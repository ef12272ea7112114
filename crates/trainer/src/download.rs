//! Downloading a dataset with a progress bar and a checksum.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// Downloads `url` to `path`, checking the SHA-256 when `sha256` is not empty.
///
/// The bytes go to a temporary file that is renamed into place only once complete and verified
/// (`char_lstm::write_atomic_with`), so a failed or interrupted download never leaves a file
/// that looks finished.
pub fn download(url: &str, path: &Path, sha256: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut failure = None;
    let written = char_lstm::write_atomic_with(path, |tmp| {
        fetch_to(url, tmp, sha256).map_err(|e| {
            let message = format!("{e:#}");
            failure = Some(e);
            std::io::Error::other(message)
        })
    });
    match (written, failure) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(e)) => Err(e),
        (Err(e), None) => Err(e.into()),
    }
}

fn fetch_to(url: &str, partial: &Path, sha256: &str) -> Result<()> {
    eprintln!("downloading {url}");
    let mut response = ureq::get(url)
        .call()
        .with_context(|| format!("download of {url} failed"))?;
    let total = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::no_length(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("valid template"),
    );
    let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
    let mut file = std::fs::File::create(partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buffer)
            .with_context(|| format!("download of {url} broke off"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        file.write_all(&buffer[..n])
            .with_context(|| format!("cannot write {}", partial.display()))?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    file.sync_all()
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let digest = hex(&hasher.finalize());
    if !sha256.is_empty() && !digest.eq_ignore_ascii_case(sha256) {
        bail!(
            "download of {url} has sha256 {digest}, expected {sha256} (data.sha256); the file was not kept"
        );
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves `body` once on 127.0.0.1 and returns the URL.
    fn serve_once(body: &'static [u8], status: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/data.txt", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(body).unwrap();
        });
        url
    }

    const BODY: &[u8] = b"hello world\n";
    // sha256 of "hello world\n"
    const SHA: &str = "a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447";

    #[test]
    fn downloads_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/data.txt");
        download(&serve_once(BODY, "200 OK"), &path, SHA).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), BODY);
    }

    #[test]
    fn checksum_mismatch_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.txt");
        let wrong = "0".repeat(64);
        let err = download(&serve_once(BODY, "200 OK"), &path, &wrong).unwrap_err();
        assert!(format!("{err:#}").contains("sha256"), "{err:#}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn http_error_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.txt");
        let err = download(&serve_once(b"nope", "404 Not Found"), &path, "").unwrap_err();
        assert!(format!("{err:#}").contains("404"), "{err:#}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}

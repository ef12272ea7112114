//! Burn's remote backend: the token both sides share, and the client's connection to a
//! `trainer serve`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;

/// The environment variable that holds the token when no `--token-file` is given.
pub const TOKEN_VAR: &str = "CHAR_LSTM_TOKEN";

/// Where the token came from, for the messages that name it.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// Read from this file.
    File(String),
    /// Read from [`TOKEN_VAR`].
    Environment,
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::File(path) => write!(f, "the token in {path}"),
            TokenSource::Environment => write!(f, "the token in {TOKEN_VAR}"),
        }
    }
}

/// A shared secret and where it came from.
#[derive(Debug, Clone)]
pub struct Token {
    /// The secret itself, without surrounding whitespace.
    pub secret: String,
    /// Where it was read.
    pub source: TokenSource,
}

/// The token in `file` (surrounding whitespace, such as a final newline, dropped), else in
/// [`TOKEN_VAR`]; `None` when neither is given. An unreadable or empty file is an error that
/// names it.
pub fn token(file: Option<&Path>) -> Result<Option<Token>> {
    let (secret, source) = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--token-file {}", path.display()))?;
            (text, TokenSource::File(path.display().to_string()))
        }
        None => match std::env::var(TOKEN_VAR) {
            Ok(text) => (text, TokenSource::Environment),
            Err(_) => return Ok(None),
        },
    };
    let secret = secret.trim().to_string();
    if secret.is_empty() {
        bail!("{source} is empty: expected the server's token");
    }
    Ok(Some(Token { secret, source }))
}

/// Devices `0 .. count` of the `trainer serve` at `url` (`ws://HOST:PORT`), each connected,
/// presenting `token` if there is one.
#[cfg(feature = "remote")]
pub fn devices(url: &str, token: Option<Token>, count: usize) -> Result<Vec<Device>> {
    use burn::remote::{ConnectError, RemoteHost};

    if !url.starts_with("ws://") {
        bail!("--remote {url}: expected ws://HOST:PORT");
    }
    let mut host = RemoteHost::websocket(url);
    if let Some(token) = &token {
        host = host.with_credential(token.secret.as_str());
    }
    (0..count)
        .map(|index| {
            Device::remote_options(&host)
                .device_index(index)
                .init()
                .map_err(|error| match error {
                    ConnectError::Unauthorized => match &token {
                        Some(token) => anyhow::anyhow!("--remote {url}: the server refused {}", token.source),
                        None => anyhow::anyhow!(
                            "--remote {url}: the server wants a token: give it with --token-file FILE or {TOKEN_VAR}"
                        ),
                    },
                    ConnectError::Unreachable { reason } => anyhow::anyhow!(
                        "--remote {url}: no `trainer serve` answers there ({reason})"
                    ),
                    ConnectError::NoSuchDevice { device_count } => anyhow::anyhow!(
                        "training.devices = {count}: the server at {url} hosts {device_count} device(s)"
                    ),
                    other => anyhow::anyhow!("--remote {url}: {other}"),
                })
        })
        .collect()
}

#[cfg(not(feature = "remote"))]
pub fn devices(_url: &str, _token: Option<Token>, _count: usize) -> Result<Vec<Device>> {
    bail!(
        "--backend remote: this build has no remote support; rebuild with `--features remote`; available: flex"
    )
}

/// Makes a panic anywhere in the process one line naming the server at `url`, then exit code 2:
/// Burn's remote client panics when its server stops answering mid-command, and nothing the
/// command left is lost that way (the run directory's files are written atomically). `resume`
/// says how to go on, for commands that train.
pub fn report_lost_server(url: &str, resume: &'static str) {
    let url = url.to_string();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("a panic without a message");
        let first_line = message.lines().next().unwrap_or_default();
        eprintln!("error: --remote {url}: the computation there stopped: {first_line}{resume}");
        std::process::exit(2);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_is_read_without_its_final_newline_and_an_empty_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let token = token(Some(&path)).unwrap().unwrap();
        assert_eq!(token.secret, "s3cret");

        std::fs::write(&path, " \n").unwrap();
        let error = format!("{:#}", super::token(Some(&path)).unwrap_err());
        assert!(
            error.contains("token") && error.contains("is empty"),
            "{error}"
        );

        let missing = dir.path().join("missing");
        let error = format!("{:#}", super::token(Some(&missing)).unwrap_err());
        assert!(
            error.starts_with("--token-file") && error.contains("missing"),
            "{error}"
        );
    }
}

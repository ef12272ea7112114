//! `trainer serve`: this machine's devices for `--backend remote` clients, through Burn's remote
//! server over WebSocket.

use anyhow::Result;

use crate::cli::ServeArgs;

/// Serves until Ctrl-C or SIGTERM; a port that cannot be bound, a missing token or a backend
/// this build lacks is an error before anything is served.
#[cfg(feature = "remote")]
pub fn serve(args: &ServeArgs) -> Result<()> {
    use std::io::Write;

    use anyhow::{Context, anyhow};
    use burn::server::{RemoteServer, TokenAuthorizer, WebSocketTransport};

    use crate::remote::{self, TOKEN_VAR};

    let token = remote::token(args.token_file.as_deref())?.ok_or_else(|| {
        anyhow!(
            "trainer serve: clients need a token to present; give it with --token-file FILE or {TOKEN_VAR}"
        )
    })?;
    let devices = args.backend.devices(args.devices)?;
    let listener = std::net::TcpListener::bind((args.bind, args.port))
        .with_context(|| format!("--bind {} --port {}", args.bind, args.port))?;
    let address = listener.local_addr()?;
    println!(
        "serving {} {} device(s) on ws://{address} (clients: --backend remote --remote ws://{address}, with {})",
        devices.len(),
        args.backend.name(),
        token.source
    );
    // Scripts wait for this line before they start a client.
    std::io::stdout().flush()?;
    let authorizer = TokenAuthorizer::new(token.secret.as_str()).map_err(|e| anyhow!("{e}"))?;
    let server = RemoteServer::new(devices).with_authorizer(authorizer);
    with_fused_ops(server, args.backend)
        .serve(WebSocketTransport::from_listener(listener))
        .map_err(|e| anyhow!("trainer serve on ws://{address}: {e}"))
}

/// `server` hosting the fused CPU ops where its devices are flex, the GPU kernels where they are
/// wgpu or cuda; elsewhere telling clients that it hosts none, so they compose the model from
/// Burn's tensor ops.
#[cfg(feature = "remote")]
fn with_fused_ops(
    server: burn::server::RemoteServer,
    backend: crate::backend::BackendKind,
) -> burn::server::RemoteServer {
    use crate::backend::BackendKind;
    match backend {
        BackendKind::Flex => char_lstm::host_fused_ops(server),
        #[cfg(feature = "ndarray")]
        BackendKind::Ndarray => char_lstm::host_no_fused_ops::<burn::backend::NdArray>(server),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu | BackendKind::Cuda => char_lstm::host_gpu_ops(server),
        #[cfg(all(feature = "cuda", not(feature = "wgpu")))]
        BackendKind::Cuda => char_lstm::host_no_fused_ops::<burn::backend::Cube>(server),
        // `BackendKind::devices` has refused the rest: backends not built, and remote devices.
        #[allow(unreachable_patterns)]
        _ => server,
    }
}

#[cfg(not(feature = "remote"))]
pub fn serve(_: &ServeArgs) -> Result<()> {
    anyhow::bail!(
        "trainer serve: this build has no remote support; rebuild with `--features remote`"
    )
}

//! The JSON-RPC 2.0 server on the local socket: framing, dispatch, one
//! handler per method, and subscription forwarding.

mod connection;
mod dispatch;
mod framing;
mod methods;
mod subscription;

use std::sync::Arc;

use interprocess::local_socket::tokio::Listener;
use interprocess::local_socket::traits::tokio::Listener as _;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use methods::resolve;

use crate::driver::{Command, SharedCounters};

/// Connections served at once; more wait in the kernel's accept queue and
/// then get served as others close. Bounded so a runaway client cannot
/// exhaust file descriptors or memory.
pub const MAX_CONNECTIONS: usize = 512;

/// What every connection shares.
#[derive(Debug)]
pub struct RpcContext {
    /// To the driver.
    pub commands: mpsc::Sender<Command>,
    /// Shared counters.
    pub counters: Arc<SharedCounters>,
}

/// Accepts connections until `cancel` fires.
pub async fn serve(
    listener: Listener,
    ctx: Arc<RpcContext>,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut warned_full = false;
    loop {
        let permit = if let Ok(p) = permits.clone().try_acquire_owned() {
            warned_full = false;
            p
        } else {
            if !warned_full {
                tracing::warn!(
                    "{MAX_CONNECTIONS} RPC connections open; new ones wait until one closes"
                );
                warned_full = true;
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            }
        };
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok(stream) => {
                let ctx = ctx.clone();
                let cancel = cancel.clone();
                tasks.spawn(async move {
                    connection::serve(stream, ctx, cancel).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // EMFILE and the like: back off briefly instead of spinning.
                tracing::warn!("cannot accept an RPC connection: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

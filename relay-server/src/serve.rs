//! The relay's accept loop: hyper with a timer, so slow or idle strangers cannot hold the relay.
//!
//! `axum::serve` runs hyper without a timer, so hyper's header-read timeout never fires: 1,000
//! connections sending one header byte a second stayed open for as long as they liked. Here:
//! - every connection must finish its request head within `header_read_timeout`;
//! - at most `max_connections` connections are open at once, and at most
//!   `max_connections_per_ip` from one address; a connection over a cap is closed at once and
//!   counted (`parley_connections_refused`). A WebSocket counts until it closes: the count is
//!   held by the socket itself ([`Counted`]), which hyper hands over on upgrade;
//! - handlers see the client's address as axum's `ConnectInfo<SocketAddr>` (the per-address
//!   limits' key): the TCP peer, or, when the peer is a trusted proxy (`--trusted-proxy`), the
//!   address it names in `X-Forwarded-For` ([`TrustedProxies::client`]). A trusted proxy is not
//!   held to the per-address connection cap (it carries everyone's sockets);
//! - on shutdown, every connection is told to finish (graceful: requests in flight complete).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The accept loop's limits (from [`crate::config::Limits`]).
#[derive(Clone, Debug)]
pub struct ServeLimits {
    /// Time a client has to send a whole request head.
    pub header_read_timeout: Duration,
    /// Open connections, all addresses together.
    pub max_connections: usize,
    /// Open connections from one address.
    pub max_connections_per_ip: usize,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
}

/// The proxies in front of the relay (`--trusted-proxy`, addresses or CIDR blocks). Only their
/// `X-Forwarded-For` is believed: anyone else could write any address there.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    /// Parses `10.0.0.5` or `10.0.0.0/8` entries.
    pub fn parse(entries: &[String]) -> anyhow::Result<Self> {
        entries
            .iter()
            .map(|e| {
                let e = e.trim();
                e.parse::<ipnet::IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!("bad --trusted-proxy {e:?}: an IP address or CIDR block")
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request that came from `peer`: `peer` itself unless it is a trusted
    /// proxy; then, walking `X-Forwarded-For` from the right (the entries the proxies added),
    /// the first address that is not a trusted proxy. An entry that is not an address stops
    /// the walk at the last one believed.
    pub fn client(&self, peer: SocketAddr, headers: &axum::http::HeaderMap) -> SocketAddr {
        if !self.trusts(peer.ip()) {
            return peer;
        }
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        let mut client = peer.ip();
        for entry in entries.iter().rev() {
            let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        SocketAddr::new(client, 0)
    }
}

/// Who holds how many connections.
#[derive(Default)]
struct Admissions {
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Admissions {
    /// A slot for one more connection from `ip`, or `None` at a cap.
    fn admit(self: &Arc<Self>, ip: IpAddr, limits: &ServeLimits) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mine = open.per_ip.get(&ip).copied().unwrap_or(0);
        let capped = !limits.trusted_proxies.trusts(ip) && mine >= limits.max_connections_per_ip;
        if open.total >= limits.max_connections || capped {
            return None;
        }
        open.total += 1;
        open.per_ip.insert(ip, mine + 1);
        Some(Slot {
            admissions: self.clone(),
            ip,
        })
    }
}

/// One admitted connection; gives its place back when dropped.
struct Slot {
    admissions: Arc<Admissions>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .admissions
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

/// A TCP stream that holds its connection's [`Slot`] for as long as it lives, also after
/// hyper hands it to a WebSocket.
struct Counted {
    tcp: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: CancellationToken,
    refused: Counter,
) {
    let admissions = Arc::new(Admissions::default());
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, mostly: back off rather than spin on the error.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = admissions.admit(peer.ip(), &limits) else {
            refused.inc();
            drop(tcp);
            continue;
        };
        // Chat frames are small and latency-bound (Nagle would hold them back up to 40 ms).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
        let io = TokioIo::new(Counted { tcp, _slot: slot });
        let service = hyper::service::service_fn(service(
            router.clone(),
            peer,
            limits.trusted_proxies.clone(),
        ));
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let connection = builder.serve_connection_with_upgrades(io, service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The per-connection service: the router, with the peer address where axum looks for it.
fn service(
    router: Router,
    peer: SocketAddr,
    proxies: TrustedProxies,
) -> impl Fn(hyper::Request<Incoming>) -> tower::util::Oneshot<Router, hyper::Request<Body>> + Clone
{
    move |request: hyper::Request<Incoming>| {
        let mut request = request.map(Body::new);
        let client = proxies.client(peer, request.headers());
        request.extensions_mut().insert(ConnectInfo(client));
        router.clone().oneshot(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_trusted_proxies_name_the_client() {
        let proxies =
            TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.1".into()]).expect("valid");
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.9, 10.1.1.1".parse().expect("value"),
        );
        let proxy: SocketAddr = "192.0.2.1:4000".parse().expect("addr");
        let stranger: SocketAddr = "198.51.100.7:4000".parse().expect("addr");
        // Through the proxies: the first address from the right that is not one of them (the
        // spoofed 6.6.6.6 the client wrote itself is never reached).
        assert_eq!(
            proxies.client(proxy, &headers).ip().to_string(),
            "203.0.113.9"
        );
        // A stranger's own header is ignored.
        assert_eq!(proxies.client(stranger, &headers), stranger);
        // Garbage stops the walk at the last address believed.
        headers.insert(
            "x-forwarded-for",
            "nonsense, 10.2.2.2".parse().expect("value"),
        );
        assert_eq!(proxies.client(proxy, &headers).ip().to_string(), "10.2.2.2");
        assert!(TrustedProxies::parse(&["not-an-ip".into()]).is_err());
    }
}

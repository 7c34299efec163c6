//! A recording TCP proxy on loopback: the browser talks to the relay through it, and a test reads
//! back every byte each side sent — HTTP requests, and the payload of every WebSocket frame,
//! unmasked — to prove what did or did not leave the page.
//!
//! It copies bytes untouched (no TLS on loopback, and the relay negotiates no WebSocket
//! extensions, so frames are plain RFC 6455 frames). Parsing happens only when the test asks.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The bytes one proxied connection carried, per direction.
#[derive(Default, Clone)]
pub struct Recorded {
    /// Browser → relay.
    pub up: Vec<u8>,
    /// Relay → browser.
    pub down: Vec<u8>,
    /// When each read ended: (ms since the proxy started, upward?, stream length after it), to
    /// put frames of several connections on one timeline.
    pub marks: Vec<(f64, bool, usize)>,
}

/// A proxy: bound first (so its origin can be allowed before the relay starts), then
/// forwarding once told where to. Stops when dropped.
pub struct CaptureProxy {
    addr: SocketAddr,
    listener: Option<TcpListener>,
    connections: Arc<Mutex<Vec<Arc<Mutex<Recorded>>>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for CaptureProxy {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    record: Arc<Mutex<Recorded>>,
    up: bool,
    started: std::time::Instant,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let mut r = record.lock().unwrap_or_else(|p| p.into_inner());
            if up {
                r.up.extend_from_slice(&buf[..n]);
            } else {
                r.down.extend_from_slice(&buf[..n]);
            }
            let len = if up { r.up.len() } else { r.down.len() };
            r.marks
                .push((started.elapsed().as_secs_f64() * 1000.0, up, len));
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl CaptureProxy {
    /// Binds 127.0.0.1:0; nothing is accepted until [`CaptureProxy::forward_to`].
    pub async fn bind() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Ok(Self {
            addr: listener.local_addr()?,
            listener: Some(listener),
            connections: Arc::default(),
            task: None,
        })
    }

    /// Starts forwarding every connection to `target`, recording it.
    pub fn forward_to(&mut self, target: SocketAddr) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        let list = self.connections.clone();
        let started = std::time::Instant::now();
        self.task = Some(tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let record = Arc::new(Mutex::new(Recorded::default()));
                list.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(record.clone());
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, record.clone(), true, started));
                tokio::spawn(pump(sr, cw, record, false, started));
            }
        }));
    }

    /// Where the browser should connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything recorded so far, per connection.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|r| r.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }

    /// The payload of every WebSocket frame the browser sent, unmasked, in order, over all
    /// connections that upgraded; plus how many such connections there were.
    pub fn websocket_frames_sent(&self) -> (Vec<Vec<u8>>, usize) {
        let mut frames = Vec::new();
        let mut sockets = 0;
        for r in self.recorded() {
            let Some(start) = upgrade_end(&r.up) else {
                continue;
            };
            sockets += 1;
            frames.extend(parse_frames(&r.up[start..]));
        }
        (frames, sockets)
    }
}

impl CaptureProxy {
    /// The payload of every WebSocket frame the relay sent on upgraded connections, in order.
    pub fn websocket_frames_received(&self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for r in self.recorded() {
            if upgrade_end(&r.up).is_none() {
                continue;
            }
            let Some(end) = r.down.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            frames.extend(parse_frames(&r.down[end + 4..]));
        }
        frames
    }
}

impl CaptureProxy {
    /// Every WebSocket frame of every upgraded connection, both ways, on one timeline:
    /// (ms since start, connection index, upward?, payload).
    pub fn timeline(&self) -> Vec<(f64, usize, bool, Vec<u8>)> {
        let mut out = Vec::new();
        for (conn, r) in self.recorded().into_iter().enumerate() {
            let Some(up_start) = upgrade_end(&r.up) else {
                continue;
            };
            let down_start = r
                .down
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(r.down.len(), |p| p + 4);
            for (up, bytes, start) in [(true, &r.up, up_start), (false, &r.down, down_start)] {
                let mut at = start;
                for payload in parse_frames(&bytes[start..]) {
                    at += frame_len(&bytes[at..]);
                    let when = r
                        .marks
                        .iter()
                        .find(|(_, u, len)| *u == up && *len >= at)
                        .map_or(f64::NAN, |m| m.0);
                    out.push((when, conn, up, payload));
                }
            }
        }
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }
}

/// The length in bytes of the frame at the start of `bytes` (header included).
fn frame_len(bytes: &[u8]) -> usize {
    if bytes.len() < 2 {
        return bytes.len();
    }
    let masked = bytes[1] & 0x80 != 0;
    let (len, at) = match bytes[1] & 0x7f {
        126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
        127 if bytes.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n as usize, 2),
    };
    at + if masked { 4 } else { 0 } + len
}

/// The end of the HTTP request that upgraded a connection to WebSocket, if it did.
fn upgrade_end(up: &[u8]) -> Option<usize> {
    let end = up.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&up[..end]).to_ascii_lowercase();
    (head.contains("upgrade: websocket")).then_some(end)
}

/// RFC 6455 frames (client → server frames are masked). Stops at a truncated frame.
pub fn parse_frames(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while bytes.len() >= 2 {
        let masked = bytes[1] & 0x80 != 0;
        let mut len = (bytes[1] & 0x7f) as usize;
        let mut at = 2;
        if len == 126 {
            if bytes.len() < 4 {
                break;
            }
            len = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
            at = 4;
        } else if len == 127 {
            if bytes.len() < 10 {
                break;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[2..10]);
            len = u64::from_be_bytes(b) as usize;
            at = 10;
        }
        let key = if masked {
            if bytes.len() < at + 4 {
                break;
            }
            let k = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
            at += 4;
            Some(k)
        } else {
            None
        };
        if bytes.len() < at + len {
            break;
        }
        let mut payload = bytes[at..at + len].to_vec();
        if let Some(k) = key {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
        }
        out.push(payload);
        bytes = &bytes[at + len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmasks_client_frames() {
        // "Hi" masked with key 1,2,3,4, as a final text frame.
        let key = [1u8, 2, 3, 4];
        let payload: Vec<u8> = b"Hi"
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        let mut frame = vec![0x81, 0x80 | 2];
        frame.extend_from_slice(&key);
        frame.extend_from_slice(&payload);
        frame.extend_from_slice(&[0x81, 0x80 | 1, 0, 0, 0, 0, b'!']);
        assert_eq!(parse_frames(&frame), vec![b"Hi".to_vec(), b"!".to_vec()]);
    }
}

//! One question to one nameserver: UDP, then TCP if the answer was truncated.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

use super::wire::matches_query;

/// Largest UDP answer read; larger datagrams are cut by the kernel and ignored.
const UDP_BUF: usize = 4096;

#[derive(Debug)]
pub(crate) enum ExchangeError {
    Timeout,
    Io(String),
}

impl From<std::io::Error> for ExchangeError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e.to_string())
    }
}

/// Which transport produced the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    Udp,
    Tcp,
}

/// Sends `query` over UDP; on a truncated answer repeats it over TCP (RFC 1035 §4.2.1,
/// RFC 7766). Each leg has its own `timeout`. Datagrams that are not the answer to this
/// query (wrong id, question or source) are ignored until the deadline.
pub(crate) async fn exchange(
    ns: SocketAddr,
    query: &[u8],
    id: u16,
    name: &Name,
    rtype: RecordType,
    timeout: Duration,
) -> Result<(Message, Via), ExchangeError> {
    let m = udp(ns, query, id, name, rtype, Instant::now() + timeout).await?;
    if !m.metadata.truncation {
        return Ok((m, Via::Udp));
    }
    tracing::debug!(%ns, %name, ?rtype, "truncated UDP answer, retrying over TCP");
    let m = tcp(ns, query, id, name, rtype, Instant::now() + timeout).await?;
    Ok((m, Via::Tcp))
}

async fn udp(
    ns: SocketAddr,
    query: &[u8],
    id: u16,
    name: &Name,
    rtype: RecordType,
    deadline: Instant,
) -> Result<Message, ExchangeError> {
    let local: SocketAddr = match ns {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await?;
    // A connected socket only receives datagrams from `ns`.
    sock.connect(ns).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; UDP_BUF];
    loop {
        let n = match timeout_at(deadline, sock.recv(&mut buf)).await {
            Err(_) => return Err(ExchangeError::Timeout),
            Ok(r) => r?,
        };
        match Message::from_vec(&buf[..n]) {
            Ok(m) if matches_query(&m, id, name, rtype) => return Ok(m),
            _ => tracing::debug!(%ns, "ignoring a datagram that is not our answer"),
        }
    }
}

async fn tcp(
    ns: SocketAddr,
    query: &[u8],
    id: u16,
    name: &Name,
    rtype: RecordType,
    deadline: Instant,
) -> Result<Message, ExchangeError> {
    let leg = async {
        let mut s = TcpStream::connect(ns).await?;
        let len =
            u16::try_from(query.len()).map_err(|_| ExchangeError::Io("query too long".into()))?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(query);
        s.write_all(&framed).await?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await?;
        // At most 65535 bytes: the length prefix bounds the allocation.
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut body).await?;
        match Message::from_vec(&body) {
            Ok(m) if matches_query(&m, id, name, rtype) => Ok(m),
            Ok(_) => Err(ExchangeError::Io(
                "TCP answer does not match the query".into(),
            )),
            Err(e) => Err(ExchangeError::Io(format!("undecodable TCP answer: {e}"))),
        }
    };
    timeout_at(deadline, leg)
        .await
        .unwrap_or(Err(ExchangeError::Timeout))
}

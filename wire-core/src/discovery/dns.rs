//! A small DNS client for discovery: A, AAAA and SRV questions to one server over UDP
//! (TCP when the answer is truncated), answers with compressed names. The server is the
//! one configured (`dns_server`) or the first `nameserver` of `/etc/resolv.conf`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

pub const A: u16 = 1;
pub const AAAA: u16 = 28;
pub const SRV: u16 = 33;

const TIMEOUT: Duration = Duration::from_secs(2);

/// An answer record this client understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Ip(IpAddr),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
}

/// The DNS server of `/etc/resolv.conf`.
pub fn system_server() -> Result<SocketAddr, String> {
    let text = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| format!("reading /etc/resolv.conf: {e}"))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .next()
        .ok_or_else(|| "no nameserver in /etc/resolv.conf: set dns_server".to_string())
}

/// The records of type `qtype` for `name` (none when the name does not exist).
pub async fn query(server: SocketAddr, name: &str, qtype: u16) -> Result<Vec<Record>, String> {
    let mut id = [0u8; 2];
    getrandom::fill(&mut id).map_err(|e| format!("no randomness for a DNS id: {e}"))?;
    let id = u16::from_be_bytes(id);
    let question = encode_query(id, name, qtype)?;
    let mut last = String::new();
    for _ in 0..2 {
        match tokio::time::timeout(TIMEOUT, udp(server, &question)).await {
            Ok(Ok(answer)) => {
                let parsed = parse(&answer, id, qtype)?;
                if !parsed.truncated {
                    return Ok(parsed.records);
                }
                let answer = tokio::time::timeout(TIMEOUT, tcp(server, &question))
                    .await
                    .map_err(|_| format!("DNS server {server}: TCP answer timed out"))?
                    .map_err(|e| format!("DNS server {server} over TCP: {e}"))?;
                return Ok(parse(&answer, id, qtype)?.records);
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "no answer within 2s".into(),
        }
    }
    Err(format!("DNS server {server}: {last}"))
}

/// The A and AAAA records of `name`. A server that answers one kind and refuses the other
/// (dnsmasq without upstream refuses AAAA for names it has only A records for) gives the
/// kind it answered.
pub async fn addresses(server: SocketAddr, name: &str) -> Result<Vec<Record>, String> {
    match (
        query(server, name, A).await,
        query(server, name, AAAA).await,
    ) {
        (Ok(mut v4), Ok(v6)) => {
            v4.extend(v6);
            Ok(v4)
        }
        (Ok(only), Err(_)) | (Err(_), Ok(only)) => Ok(only),
        (Err(e), Err(_)) => Err(e),
    }
}

async fn udp(server: SocketAddr, question: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(question).await?;
    let mut buf = vec![0u8; 4096];
    let n = socket.recv(&mut buf).await?;
    buf.truncate(n);
    Ok(buf)
}

async fn tcp(server: SocketAddr, question: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await?;
    let len = u16::try_from(question.len()).unwrap_or(u16::MAX);
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(question).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(32 + name.len());
    out.extend(id.to_be_bytes());
    out.extend(0x0100u16.to_be_bytes()); // recursion desired
    out.extend(1u16.to_be_bytes()); // one question
    out.extend([0u8; 6]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("'{name}' is not a valid DNS name"));
        }
        out.push(label.len() as u8);
        out.extend(label.as_bytes());
    }
    out.push(0);
    out.extend(qtype.to_be_bytes());
    out.extend(1u16.to_be_bytes()); // class IN
    Ok(out)
}

struct Parsed {
    truncated: bool,
    records: Vec<Record>,
}

fn u16_at(msg: &[u8], at: usize) -> Result<u16, String> {
    msg.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| "DNS answer cut short".to_string())
}

/// Reads the (possibly compressed) name at `at`: the name and the offset after it.
fn read_name(msg: &[u8], mut at: usize) -> Result<(String, usize), String> {
    let mut labels = Vec::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(at).ok_or("DNS name cut short")?;
        match len {
            0 => {
                let name = labels.join(".");
                return Ok((name, end.unwrap_or(at + 1)));
            }
            l if l & 0xC0 == 0xC0 => {
                let pointer = usize::from(u16_at(msg, at)? & 0x3FFF);
                end.get_or_insert(at + 2);
                at = pointer;
            }
            l => {
                let l = usize::from(l);
                let label = msg.get(at + 1..at + 1 + l).ok_or("DNS label cut short")?;
                labels.push(String::from_utf8_lossy(label).into_owned());
                at += 1 + l;
            }
        }
    }
    Err("DNS name with too many labels or a pointer loop".into())
}

fn parse(msg: &[u8], id: u16, qtype: u16) -> Result<Parsed, String> {
    if u16_at(msg, 0)? != id {
        return Err("DNS answer to another question".into());
    }
    let flags = u16_at(msg, 2)?;
    let truncated = flags & 0x0200 != 0;
    match flags & 0x000F {
        0 => {}
        3 => {
            return Ok(Parsed {
                truncated: false,
                records: Vec::new(),
            })
        }
        code => return Err(format!("DNS server answered with error code {code}")),
    }
    let questions = u16_at(msg, 4)?;
    let answers = u16_at(msg, 6)?;
    let mut at = 12;
    for _ in 0..questions {
        at = read_name(msg, at)?.1 + 4;
    }
    let mut records = Vec::new();
    for _ in 0..answers {
        let (_, next) = read_name(msg, at)?;
        let rtype = u16_at(msg, next)?;
        let len = usize::from(u16_at(msg, next + 8)?);
        let data = next + 10;
        let rdata = msg.get(data..data + len).ok_or("DNS record cut short")?;
        match (rtype, rdata.len()) {
            (A, 4) if qtype == A => records.push(Record::Ip(IpAddr::V4(Ipv4Addr::new(
                rdata[0], rdata[1], rdata[2], rdata[3],
            )))),
            (AAAA, 16) if qtype == AAAA => {
                let mut b = [0u8; 16];
                b.copy_from_slice(rdata);
                records.push(Record::Ip(IpAddr::V6(Ipv6Addr::from(b))));
            }
            (SRV, l) if qtype == SRV && l >= 7 => records.push(Record::Srv {
                priority: u16_at(msg, data)?,
                weight: u16_at(msg, data + 2)?,
                port: u16_at(msg, data + 4)?,
                target: read_name(msg, data + 6)?.0,
            }),
            // CNAMEs and the like: the server resolved them; their records follow.
            _ => {}
        }
        at = data + len;
    }
    Ok(Parsed { truncated, records })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer as a server would write it: the question, then SRV and A records whose
    /// names point back at the question's (compression).
    #[test]
    fn answers_with_compressed_names_are_read() {
        let id = 0x1234;
        let mut msg = encode_query(id, "_wire._tcp.example", SRV).expect("query");
        msg[2..4].copy_from_slice(&0x8180u16.to_be_bytes());
        msg[6..8].copy_from_slice(&2u16.to_be_bytes());
        // SRV: name = pointer to 12, type, class, ttl, rdlength, priority, weight, port,
        // target "n1" + pointer to "example" (offset of its label in the question).
        let example = 12 + 1 + 5 + 1 + 4;
        msg.extend([0xC0, 12]);
        msg.extend(SRV.to_be_bytes());
        msg.extend(1u16.to_be_bytes());
        msg.extend(60u32.to_be_bytes());
        msg.extend(11u16.to_be_bytes());
        msg.extend(1u16.to_be_bytes());
        msg.extend(5u16.to_be_bytes());
        msg.extend(8081u16.to_be_bytes());
        msg.extend([2, b'n', b'1', 0xC0, example as u8]);
        // An A record the parser skips for an SRV question.
        msg.extend([0xC0, 12]);
        msg.extend(A.to_be_bytes());
        msg.extend(1u16.to_be_bytes());
        msg.extend(60u32.to_be_bytes());
        msg.extend(4u16.to_be_bytes());
        msg.extend([127, 0, 0, 2]);
        let parsed = parse(&msg, id, SRV).expect("parse");
        assert_eq!(
            parsed.records,
            [Record::Srv {
                priority: 1,
                weight: 5,
                port: 8081,
                target: "n1.example".into()
            }]
        );
        assert!(parse(&msg, id + 1, SRV).is_err());
        // Cut anywhere, it is an error, never a panic.
        for cut in 0..msg.len() {
            let _ = parse(&msg[..cut], id, SRV);
        }
    }
}

//! How a node finds the others without `--join`: DNS (A/AAAA records, every node on the same
//! HTTP port), DNS SRV (host and port per node) or etcd (each node keeps a key under a
//! prefix alive with a lease). Consul is not offered: its agent is no longer open source
//! (BSL), so it cannot be run and tested here. With
//! `bootstrap_expect = N`, a node that finds no cluster waits until N nodes are found, and
//! the one with the lowest id bootstraps; the others join it (`ops::cluster`).

mod dns;
mod registry;

use std::net::{IpAddr, SocketAddr};

pub use registry::{Me, Registration};

/// Where to look for the other nodes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Discover {
    /// `dns:NAME[:PORT]`: the addresses of NAME; the port is this node's HTTP port unless
    /// given.
    Dns { name: String, port: Option<u16> },
    /// `dns-srv:NAME`: SRV records (target and HTTP port).
    DnsSrv { name: String },
    /// `etcd:HOST:PORT[,HOST:PORT...]/PREFIX`.
    Etcd {
        endpoints: Vec<String>,
        prefix: String,
    },
}

impl std::str::FromStr for Discover {
    type Err = String;

    fn from_str(s: &str) -> Result<Discover, String> {
        let usage = "use dns:NAME[:PORT], dns-srv:NAME or etcd:HOST:PORT[,HOST:PORT...]/PREFIX";
        let (mode, rest) = s.split_once(':').ok_or_else(|| format!("'{s}': {usage}"))?;
        let host_port = |hp: &str| {
            hp.rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        };
        match mode {
            "dns" => {
                let (name, port) = match rest.rsplit_once(':') {
                    Some((name, port)) => {
                        let port = port
                            .parse::<u16>()
                            .map_err(|_| format!("'{s}': '{port}' is not a port"))?;
                        (name, Some(port))
                    }
                    None => (rest, None),
                };
                if name.is_empty() {
                    return Err(format!("'{s}': no name; {usage}"));
                }
                Ok(Discover::Dns {
                    name: name.to_string(),
                    port,
                })
            }
            "dns-srv" if !rest.is_empty() => Ok(Discover::DnsSrv {
                name: rest.to_string(),
            }),
            "etcd" => {
                let (endpoints, prefix) = rest
                    .split_once('/')
                    .ok_or_else(|| format!("'{s}': no /PREFIX; {usage}"))?;
                let endpoints: Vec<String> =
                    endpoints.split(',').map(|e| e.trim().to_string()).collect();
                if prefix.is_empty() || !endpoints.iter().all(|e| host_port(e)) {
                    return Err(format!("'{s}': {usage}"));
                }
                Ok(Discover::Etcd {
                    endpoints,
                    prefix: format!("/{}", prefix.trim_matches('/')),
                })
            }
            "consul" => Err(format!(
                "'{s}': Consul is not supported (its agent is not open source since 1.17); {usage}"
            )),
            _ => Err(format!("'{s}': {usage}")),
        }
    }
}

/// Where discovery looks, with what it needs to look there.
#[derive(Debug, Clone)]
pub struct Finder {
    pub discover: Discover,
    /// The DNS server (DNS modes).
    pub dns_server: Option<SocketAddr>,
    /// This node's HTTP port (the port of `dns:` addresses without one).
    pub http_port: u16,
    /// For etcd.
    pub http: reqwest::Client,
}

impl Finder {
    /// The HTTP addresses of the nodes found now (this one among them, if registered).
    pub async fn find(&self) -> Result<Vec<String>, String> {
        let server = || match self.dns_server {
            Some(s) => Ok(s),
            None => dns::system_server(),
        };
        let mut found = match &self.discover {
            Discover::Dns { name, port } => {
                let server = server()?;
                let port = port.unwrap_or(self.http_port);
                dns::addresses(server, name)
                    .await?
                    .into_iter()
                    .filter_map(|r| match r {
                        dns::Record::Ip(ip) => Some(SocketAddr::new(ip, port).to_string()),
                        dns::Record::Srv { .. } => None,
                    })
                    .collect::<Vec<_>>()
            }
            Discover::DnsSrv { name } => {
                let server = server()?;
                let mut out = Vec::new();
                for record in dns::query(server, name, dns::SRV).await? {
                    let dns::Record::Srv { port, target, .. } = record else {
                        continue;
                    };
                    let ips: Vec<IpAddr> = match target.parse::<IpAddr>() {
                        Ok(ip) => vec![ip],
                        Err(_) => dns::addresses(server, &target)
                            .await?
                            .into_iter()
                            .filter_map(|r| match r {
                                dns::Record::Ip(ip) => Some(ip),
                                dns::Record::Srv { .. } => None,
                            })
                            .collect(),
                    };
                    out.extend(
                        ips.into_iter()
                            .map(|ip| SocketAddr::new(ip, port).to_string()),
                    );
                }
                out
            }
            Discover::Etcd { endpoints, prefix } => {
                registry::etcd_find(&self.http, endpoints, prefix).await?
            }
        };
        found.sort();
        found.dedup();
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_specs_parse_or_say_what_is_wrong() {
        let p = |s: &str| s.parse::<Discover>();
        assert_eq!(
            p("dns:nodes.wire.test"),
            Ok(Discover::Dns {
                name: "nodes.wire.test".into(),
                port: None
            })
        );
        assert_eq!(
            p("dns:nodes.wire.test:8081"),
            Ok(Discover::Dns {
                name: "nodes.wire.test".into(),
                port: Some(8081)
            })
        );
        assert_eq!(
            p("dns-srv:_wire._tcp.wire.test"),
            Ok(Discover::DnsSrv {
                name: "_wire._tcp.wire.test".into()
            })
        );
        assert_eq!(
            p("etcd:127.0.0.1:2379,127.0.0.2:2379/wire/prod"),
            Ok(Discover::Etcd {
                endpoints: vec!["127.0.0.1:2379".into(), "127.0.0.2:2379".into()],
                prefix: "/wire/prod".into()
            })
        );
        for bad in [
            "nodes.wire.test",
            "dns:",
            "dns:name:port",
            "dns-srv:",
            "etcd:127.0.0.1:2379",
            "etcd:localhost/prefix",
            "consul:127.0.0.1:8500/wire",
            "zookeeper:x",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }
}

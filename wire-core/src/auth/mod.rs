//! Who may do what: users with permissions per family of routes (rqlite's model), checked on
//! every request to the public API, and the cluster secret nodes present to each other.
//!
//! - A user has a password, stored as an argon2 hash (PHC string), a bearer token, stored as
//!   its SHA-256, or both, and a set of [`Permission`]s.
//! - A request shows a user by HTTP basic auth (`Authorization: Basic`) or a token
//!   (`Authorization: Bearer`).
//! - A node shows the cluster secret in [`SECRET_HEADER`]; it may do everything.
//!
//! The parsing and checking of the configured users is here; `http::auth` applies it to
//! routes and `server.rs` to the node-to-node listener.

mod users;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use users::{
    hash_password, new_token, token_sha256, validate as validate_users, UserEntry, UsersFile,
};

/// The header a node puts its cluster secret in, on node-to-node calls and on the calls it
/// makes to a peer's public API (joining).
pub const SECRET_HEADER: &str = "x-wire-cluster-secret";

/// A family of routes a user may be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// Key-value reads (`GET /kv...`).
    Read,
    /// Key-value writes and transactions.
    Write,
    /// Creating, updating, deleting, pausing and resuming pipelines.
    Pipelines,
    /// Adding a member (`POST /cluster/join`).
    Join,
    /// Removing or draining a member.
    Remove,
    /// The node's and the cluster's status, members, metrics, and pipelines as read.
    Status,
    /// Everything.
    All,
}

impl Permission {
    pub const EVERY: [Permission; 7] = [
        Permission::Read,
        Permission::Write,
        Permission::Pipelines,
        Permission::Join,
        Permission::Remove,
        Permission::Status,
        Permission::All,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Pipelines => "pipelines",
            Permission::Join => "join",
            Permission::Remove => "remove",
            Permission::Status => "status",
            Permission::All => "all",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Permission {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Permission::EVERY
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Permission::EVERY.iter().map(|p| p.name()).collect();
                format!("unknown permission '{s}' (one of {})", names.join(", "))
            })
    }
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Authentication is off: anyone may do anything.
    Anyone,
    /// A node of the cluster (it showed the cluster secret).
    Node,
    /// A configured user.
    User {
        name: String,
        permissions: BTreeSet<Permission>,
    },
}

impl Principal {
    /// Whether this principal may use routes of `family`.
    pub fn may(&self, family: Permission) -> bool {
        match self {
            Principal::Anyone | Principal::Node => true,
            Principal::User { permissions, .. } => {
                permissions.contains(&Permission::All) || permissions.contains(&family)
            }
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No credentials were shown: 401.
    #[error("this node requires authentication: send HTTP basic auth or a bearer token")]
    NoCredentials,
    /// The credentials shown are not a user's: 401.
    #[error("{0}")]
    BadCredentials(String),
    /// The user may not use the route: 403.
    #[error("user '{user}' lacks the '{permission}' permission")]
    Forbidden {
        user: String,
        permission: Permission,
    },
}

/// A secret shared by the nodes of a cluster, compared in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret(String);

impl ClusterSecret {
    pub fn new(secret: String) -> Result<Self, String> {
        if secret.len() < 16 {
            return Err("must be at least 16 characters".into());
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be printable ASCII without spaces (it travels in a header)".into());
        }
        Ok(Self(secret))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `shown` is this secret.
    pub fn matches(&self, shown: &[u8]) -> bool {
        let a = Sha256::digest(self.0.as_bytes());
        let b = Sha256::digest(shown);
        a.ct_eq(&b).into()
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

/// A configured user, ready to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// The argon2 hash of the password (a PHC string), if the user has a password.
    pub password_hash: Option<String>,
    /// The SHA-256 of the token, if the user has one.
    pub token_sha256: Option<[u8; 32]>,
    pub permissions: BTreeSet<Permission>,
}

/// The users of a node and the cluster secret: decides who a request comes from.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    inner: Arc<GateInner>,
}

#[derive(Debug, Default)]
struct GateInner {
    users: HashMap<String, User>,
    by_token: HashMap<[u8; 32], String>,
    secret: Option<ClusterSecret>,
    /// Nodes show certificates signed by the cluster's CA (mutual TLS).
    mtls: bool,
    /// Per user, the SHA-256 of the password that last verified: argon2 is slow on purpose
    /// (tens of milliseconds), and a client sends its password with every request.
    verified: Mutex<HashMap<String, [u8; 32]>>,
}

impl Gate {
    pub fn new(users: Vec<User>, secret: Option<ClusterSecret>, mtls: bool) -> Gate {
        let by_token = users
            .iter()
            .filter_map(|u| u.token_sha256.map(|t| (t, u.name.clone())))
            .collect();
        let users = users.into_iter().map(|u| (u.name.clone(), u)).collect();
        Gate {
            inner: Arc::new(GateInner {
                users,
                by_token,
                secret,
                mtls,
                verified: Mutex::default(),
            }),
        }
    }

    /// Whether requests to the public API must show a user.
    pub fn users_required(&self) -> bool {
        !self.inner.users.is_empty()
    }

    pub fn secret(&self) -> Option<&ClusterSecret> {
        self.inner.secret.as_ref()
    }

    /// Whether anything is checked at all: users, or members that only nodes may change
    /// (a cluster secret or mutual TLS).
    pub fn checks_anything(&self) -> bool {
        self.users_required() || self.inner.secret.is_some() || self.inner.mtls
    }

    /// Whether a node-to-node call with this secret header may pass.
    pub fn node_call_allowed(&self, shown: Option<&[u8]>) -> bool {
        match (&self.inner.secret, shown) {
            (None, _) => true,
            (Some(secret), Some(shown)) => secret.matches(shown),
            (Some(_), None) => false,
        }
    }

    /// Who a request with this `Authorization` header and secret header comes from, if
    /// `needed` allows it. `None` when finding out needs argon2 (a password not seen
    /// before): then call [`Gate::authorize_slowly`] off the async threads.
    pub fn authorize(
        &self,
        shown: &Shown<'_>,
        needed: Option<Permission>,
    ) -> Option<Result<Principal, Denied>> {
        match self.authenticate(shown, false) {
            Err(Check::Slow) => None,
            other => Some(self.permit(other.map_err(Check::denied), needed)),
        }
    }

    /// As [`Gate::authorize`], running argon2 when it must (tens of milliseconds).
    pub fn authorize_slowly(
        &self,
        shown: &Shown<'_>,
        needed: Option<Permission>,
    ) -> Result<Principal, Denied> {
        let who = self.authenticate(shown, true).map_err(Check::denied);
        self.permit(who, needed)
    }

    fn permit(
        &self,
        who: Result<Principal, Denied>,
        needed: Option<Permission>,
    ) -> Result<Principal, Denied> {
        let who = who?;
        let Some(family) = needed else {
            return Ok(who);
        };
        // Without users the API is open, but a cluster with a secret admits and removes
        // members only for its nodes: a stranger must not vote.
        if who == Principal::Anyone
            && (self.inner.secret.is_some() || self.inner.mtls)
            && matches!(family, Permission::Join | Permission::Remove)
        {
            return Err(Denied::BadCredentials(format!(
                "adding or removing members of this cluster needs its secret (the {SECRET_HEADER} header) or a node certificate"
            )));
        }
        match &who {
            Principal::User { name, .. } if !who.may(family) => Err(Denied::Forbidden {
                user: name.clone(),
                permission: family,
            }),
            _ => Ok(who),
        }
    }

    fn authenticate(&self, shown: &Shown<'_>, slow: bool) -> Result<Principal, Check> {
        if shown.node_certificate && self.inner.mtls {
            return Ok(Principal::Node);
        }
        let authorization = shown.authorization;
        if let (Some(s), Some(shown)) = (&self.inner.secret, shown.secret) {
            if s.matches(shown) {
                return Ok(Principal::Node);
            }
            return Err(Check::Denied(Denied::BadCredentials(format!(
                "the {SECRET_HEADER} header is not this cluster's secret"
            ))));
        }
        if !self.users_required() {
            return Ok(Principal::Anyone);
        }
        let Some(header) = authorization else {
            return Err(Check::Denied(Denied::NoCredentials));
        };
        let bad = |why: &str| Check::Denied(Denied::BadCredentials(why.to_string()));
        let header =
            std::str::from_utf8(header).map_err(|_| bad("the Authorization header is not text"))?;
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header, ""));
        let user = if scheme.eq_ignore_ascii_case("basic") {
            let (name, password) = decode_basic(rest.trim()).map_err(Check::Denied)?;
            self.check_password(&name, &password, slow)?
        } else if scheme.eq_ignore_ascii_case("bearer") {
            let digest: [u8; 32] = Sha256::digest(rest.trim().as_bytes()).into();
            let name = self
                .inner
                .by_token
                .get(&digest)
                .ok_or_else(|| bad("unknown bearer token"))?;
            self.user(name).map_err(Check::Denied)?
        } else {
            return Err(bad(&format!(
                "unsupported Authorization scheme '{scheme}' (use Basic or Bearer)"
            )));
        };
        Ok(Principal::User {
            name: user.name.clone(),
            permissions: user.permissions.clone(),
        })
    }

    fn user(&self, name: &str) -> Result<&User, Denied> {
        self.inner
            .users
            .get(name)
            .ok_or_else(|| Denied::BadCredentials("wrong user name or password".into()))
    }

    fn check_password(&self, name: &str, password: &str, slow: bool) -> Result<&User, Check> {
        let wrong = || Check::Denied(Denied::BadCredentials("wrong user name or password".into()));
        let user = self.user(name).map_err(Check::Denied)?;
        let Some(hash) = &user.password_hash else {
            return Err(wrong());
        };
        let digest: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        let cached = self
            .inner
            .verified
            .lock()
            .map(|v| v.get(name).copied())
            .unwrap_or(None);
        if let Some(cached) = cached {
            if bool::from(cached.ct_eq(&digest)) {
                return Ok(user);
            }
        }
        if !slow {
            return Err(Check::Slow);
        }
        if !users::verify_password(hash, password) {
            return Err(wrong());
        }
        if let Ok(mut v) = self.inner.verified.lock() {
            v.insert(name.to_string(), digest);
        }
        Ok(user)
    }
}

/// What a request shows of who sent it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shown<'a> {
    /// The `Authorization` header.
    pub authorization: Option<&'a [u8]>,
    /// The cluster secret header.
    pub secret: Option<&'a [u8]>,
    /// The connection showed a certificate the cluster's CA signed.
    pub node_certificate: bool,
}

/// Why an authentication did not finish.
enum Check {
    Denied(Denied),
    /// It needs argon2: go again off the async threads.
    Slow,
}

impl Check {
    fn denied(self) -> Denied {
        match self {
            Check::Denied(d) => d,
            Check::Slow => Denied::BadCredentials("password not checked".into()),
        }
    }
}

fn decode_basic(encoded: &str) -> Result<(String, String), Denied> {
    let bad = || Denied::BadCredentials("malformed basic credentials".into());
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (name, password) = text.split_once(':').ok_or_else(bad)?;
    Ok((name.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> Vec<u8> {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}").into_bytes()
    }

    fn gate() -> (Gate, String) {
        let token = new_token();
        let users = vec![
            User {
                name: "alice".into(),
                password_hash: Some(hash_password("s3cret-pass").expect("hash")),
                token_sha256: None,
                permissions: [Permission::Read].into(),
            },
            User {
                name: "ci".into(),
                password_hash: None,
                token_sha256: Some(Sha256::digest(token.as_bytes()).into()),
                permissions: [Permission::All].into(),
            },
        ];
        let secret = ClusterSecret::new("a-cluster-secret-of-length".into()).expect("secret");
        (Gate::new(users, Some(secret), false), token)
    }

    fn by<'a>(authorization: Option<&'a [u8]>, secret: Option<&'a [u8]>) -> Shown<'a> {
        Shown {
            authorization,
            secret,
            node_certificate: false,
        }
    }

    /// What the routes see: argon2 runs only for a password not seen before.
    fn check(
        gate: &Gate,
        authorization: Option<&[u8]>,
        secret: Option<&[u8]>,
    ) -> Result<Principal, Denied> {
        let shown = Shown {
            authorization,
            secret,
            node_certificate: false,
        };
        gate.authorize(&shown, None)
            .unwrap_or_else(|| gate.authorize_slowly(&shown, None))
    }

    #[test]
    fn users_are_told_apart_by_password_token_and_secret() {
        let (gate, token) = gate();
        assert!(gate
            .authorize(&by(Some(&basic("alice", "s3cret-pass")), None), None)
            .is_none());
        let alice = check(&gate, Some(&basic("alice", "s3cret-pass")), None).expect("alice");
        assert!(alice.may(Permission::Read));
        assert!(!alice.may(Permission::Write));
        // The second time is answered from the cache, and a wrong password still fails.
        assert!(gate
            .authorize(&by(Some(&basic("alice", "s3cret-pass")), None), None)
            .is_some());
        assert_eq!(
            check(&gate, Some(&basic("alice", "s3cret-pass")), None),
            Ok(alice)
        );
        assert!(matches!(
            check(&gate, Some(&basic("alice", "wrong")), None),
            Err(Denied::BadCredentials(_))
        ));
        assert!(matches!(
            check(&gate, Some(&basic("bob", "s3cret-pass")), None),
            Err(Denied::BadCredentials(_))
        ));
        assert_eq!(check(&gate, None, None), Err(Denied::NoCredentials));
        let ci = check(&gate, Some(format!("Bearer {token}").as_bytes()), None).expect("ci");
        assert!(ci.may(Permission::Remove));
        assert!(matches!(
            check(&gate, Some(b"Bearer nope"), None),
            Err(Denied::BadCredentials(_))
        ));
        assert_eq!(
            check(&gate, None, Some(b"a-cluster-secret-of-length")),
            Ok(Principal::Node)
        );
        assert!(check(&gate, None, Some(b"another")).is_err());
        assert!(gate.node_call_allowed(Some(b"a-cluster-secret-of-length")));
        let alice = Some(basic("alice", "s3cret-pass"));
        assert_eq!(
            gate.authorize(&by(alice.as_deref(), None), Some(Permission::Write)),
            Some(Err(Denied::Forbidden {
                user: "alice".into(),
                permission: Permission::Write
            }))
        );
        assert!(!gate.node_call_allowed(Some(b"a-cluster-secret-of-lengtH")));
        assert!(!gate.node_call_allowed(None));
    }

    #[test]
    fn without_users_anyone_may_use_the_api_but_only_nodes_change_members() {
        let gate = Gate::new(Vec::new(), None, false);
        assert_eq!(check(&gate, None, None), Ok(Principal::Anyone));
        assert!(gate.node_call_allowed(None));
        let secret = ClusterSecret::new("a-cluster-secret-of-length".into()).expect("secret");
        let gate = Gate::new(Vec::new(), Some(secret), false);
        assert_eq!(
            gate.authorize(&by(None, None), Some(Permission::Write)),
            Some(Ok(Principal::Anyone))
        );
        for family in [Permission::Join, Permission::Remove] {
            assert!(matches!(
                gate.authorize(&by(None, None), Some(family)),
                Some(Err(Denied::BadCredentials(_)))
            ));
            assert_eq!(
                gate.authorize(&by(None, Some(b"a-cluster-secret-of-length")), Some(family)),
                Some(Ok(Principal::Node))
            );
        }
    }

    #[test]
    fn with_mutual_tls_a_node_certificate_is_a_node() {
        let gate = Gate::new(Vec::new(), None, true);
        let cert = Shown {
            node_certificate: true,
            ..Shown::default()
        };
        assert_eq!(
            gate.authorize(&cert, Some(Permission::Join)),
            Some(Ok(Principal::Node))
        );
        assert!(matches!(
            gate.authorize(&Shown::default(), Some(Permission::Join)),
            Some(Err(Denied::BadCredentials(_)))
        ));
    }
}

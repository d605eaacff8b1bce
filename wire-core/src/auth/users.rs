//! Users as configured: the entries of a users file or of `[[users]]` in a node's TOML, their
//! validation (every problem at once), and the hashing behind them.

use std::collections::BTreeSet;
use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

use super::{Permission, User};

/// One user as written in a users file:
///
/// ```toml
/// [[users]]
/// name = "alice"
/// password_hash = "$argon2id$v=19$m=19456,t=2,p=1$..."   # wire user hash-password
/// permissions = ["read", "status"]
///
/// [[users]]
/// name = "deployer"
/// token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
/// permissions = ["pipelines", "status"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub name: String,
    /// The argon2 hash of the password as a PHC string (`wire user hash-password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// The SHA-256 of a bearer token, in hex (`wire user new-token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    pub permissions: Vec<String>,
}

/// A users file: `[[users]]` entries (TOML, or JSON `{"users": [...]}` when the file name
/// ends in `.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    #[serde(default)]
    pub users: Vec<UserEntry>,
}

impl UsersFile {
    /// Reads a users file.
    pub fn read(path: &Path) -> Result<UsersFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let parsed = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        } else {
            toml::from_str(&text).map_err(|e| e.to_string().trim_end().to_string())
        };
        parsed.map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Checks entries into users, naming every problem (each prefixed with the user's name).
pub fn validate(entries: &[UserEntry]) -> Result<Vec<User>, Vec<String>> {
    let mut problems = Vec::new();
    let mut users = Vec::new();
    let mut names = BTreeSet::new();
    let mut tokens = BTreeSet::new();
    for (i, e) in entries.iter().enumerate() {
        let who = if e.name.is_empty() {
            format!("user #{}", i + 1)
        } else {
            format!("user '{}'", e.name)
        };
        let mut fine = true;
        let mut fail = |problem: String| {
            problems.push(format!("{who}: {problem}"));
            fine = false;
        };
        if e.name.is_empty() || e.name.contains(':') || e.name.chars().any(char::is_control) {
            fail("the name must be non-empty, without ':' or control characters".into());
        } else if !names.insert(e.name.clone()) {
            fail("named twice".into());
        }
        if e.password_hash.is_none() && e.token_sha256.is_none() {
            fail("has neither password_hash nor token_sha256: it could never sign in".into());
        }
        if let Some(h) = &e.password_hash {
            if let Err(why) = check_password_hash(h) {
                fail(format!("password_hash: {why}"));
            }
        }
        let token = match e.token_sha256.as_deref().map(parse_sha256).transpose() {
            Ok(t) => t,
            Err(why) => {
                fail(format!("token_sha256: {why}"));
                None
            }
        };
        if let Some(t) = token {
            if !tokens.insert(t) {
                fail("token_sha256: the same token as another user".into());
            }
        }
        let mut permissions = BTreeSet::new();
        if e.permissions.is_empty() {
            fail("permissions: none given (use e.g. [\"read\", \"status\"], or [\"all\"])".into());
        }
        for p in &e.permissions {
            match p.parse::<Permission>() {
                Ok(p) => {
                    permissions.insert(p);
                }
                Err(why) => fail(format!("permissions: {why}")),
            }
        }
        if fine {
            users.push(User {
                name: e.name.clone(),
                password_hash: e.password_hash.clone(),
                token_sha256: token,
                permissions,
            });
        }
    }
    if problems.is_empty() {
        Ok(users)
    } else {
        Err(problems)
    }
}

fn check_password_hash(h: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(h).map_err(|e| {
        format!("not a PHC hash string ({e}); make one with `wire user hash-password`")
    })?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(format!(
            "algorithm '{}' is not argon2 (argon2id, argon2i or argon2d)",
            parsed.algorithm
        ));
    }
    Ok(())
}

fn parse_sha256(hex: &str) -> Result<[u8; 32], String> {
    let hex = hex.trim();
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return Err(format!(
            "must be 64 hex digits (a SHA-256), got {} characters",
            bytes.len()
        ));
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        match (digit(pair[0]), digit(pair[1])) {
            (Some(a), Some(b)) => out[i] = (a * 16 + b) as u8,
            _ => return Err("must be hex digits only".into()),
        }
    }
    Ok(out)
}

/// Whether `password` matches the PHC `hash` (argon2; slow on purpose).
pub(super) fn verify_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// The argon2id hash of `password`, as a PHC string for `password_hash`.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness for the salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// A new random bearer token (256 bits, URL-safe base64) and the hex SHA-256 to configure.
pub fn new_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    // Without randomness there is no safe token to give; the OS always has it on the
    // platforms Wire supports.
    if getrandom::fill(&mut bytes).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The hex SHA-256 of a token, as `token_sha256` wants it.
pub fn token_sha256(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_of_every_user_is_named() {
        let entries = vec![
            UserEntry {
                name: "alice".into(),
                password_hash: Some("plain-text".into()),
                token_sha256: None,
                permissions: vec!["raed".into()],
            },
            UserEntry {
                name: "alice".into(),
                password_hash: None,
                token_sha256: Some("abc".into()),
                permissions: vec![],
            },
            UserEntry {
                name: "".into(),
                password_hash: None,
                token_sha256: None,
                permissions: vec!["all".into()],
            },
        ];
        let problems = validate(&entries).expect_err("invalid");
        let text = problems.join("\n");
        for expected in [
            "user 'alice': password_hash: not a PHC hash string",
            "user 'alice': permissions: unknown permission 'raed'",
            "user 'alice': named twice",
            "user 'alice': token_sha256: must be 64 hex digits",
            "user 'alice': permissions: none given",
            "user #3: the name must be non-empty",
            "user #3: has neither password_hash nor token_sha256",
        ] {
            assert!(text.contains(expected), "{expected} missing in:\n{text}");
        }
    }

    #[test]
    fn hashes_and_tokens_made_by_the_tools_validate() {
        let token = new_token();
        assert!(token.len() >= 43, "{token}");
        let entries = vec![UserEntry {
            name: "ops".into(),
            password_hash: Some(hash_password("pw").expect("hash")),
            token_sha256: Some(token_sha256(&token)),
            permissions: vec!["status".into(), "remove".into()],
        }];
        let users = validate(&entries).expect("valid");
        assert_eq!(
            users[0].permissions,
            [Permission::Remove, Permission::Status].into()
        );
        assert!(verify_password(
            users[0].password_hash.as_deref().unwrap_or(""),
            "pw"
        ));
        assert!(!verify_password(
            users[0].password_hash.as_deref().unwrap_or(""),
            "pW"
        ));
    }
}

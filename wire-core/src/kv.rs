//! The replicated key-value space: key rules, limits, and multi-key transactions with
//! etcd-style compare / success / failure branches, applied all-or-nothing.

use serde::{Deserialize, Serialize};

/// Longest key accepted, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value accepted, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Most operations (compares plus puts and deletes) in one transaction.
pub const MAX_TXN_OPS: usize = 1024;
/// Largest page a list returns.
pub const MAX_LIST_LIMIT: usize = 10_000;

/// A committed put: its log index and whether the key existed before. Serialized as every
/// face answers it: `{"index", "existed"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KvWritten {
    pub index: u64,
    pub existed: bool,
}

/// A committed delete: `{"index", "deleted"}` (whether the key existed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KvDeleted {
    pub index: u64,
    pub deleted: bool,
}

/// A committed transaction: `{"succeeded", "index"}` (whether the compares held and the
/// `success` branch ran).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TxnOutcome {
    pub succeeded: bool,
    pub index: u64,
}

/// A problem with a key, value or transaction supplied by a caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    #[error("key is empty")]
    EmptyKey,
    #[error("key is {len} bytes; the limit is {MAX_KEY_BYTES}")]
    KeyTooLong { len: usize },
    #[error("key contains a control character at byte {at}")]
    KeyControlChar { at: usize },
    #[error("value is {len} bytes; the limit is {MAX_VALUE_BYTES}")]
    ValueTooLarge { len: usize },
    #[error("transaction has {count} operations; the limit is {MAX_TXN_OPS}")]
    TxnTooLarge { count: usize },
    #[error("{path}: {reason}")]
    InvalidTxn { path: String, reason: String },
}

/// Checks that `key` is a valid user key.
pub fn validate_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::KeyTooLong { len: key.len() });
    }
    if let Some((at, _)) = key.char_indices().find(|(_, c)| c.is_control()) {
        return Err(KvError::KeyControlChar { at });
    }
    Ok(())
}

/// Checks that `value` fits the value limit.
pub fn validate_value(value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::ValueTooLarge { len: value.len() });
    }
    Ok(())
}

/// A condition a transaction checks before choosing its branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compare {
    /// The key exists and holds exactly this value.
    Equals {
        key: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// The key exists.
    Exists { key: String },
    /// The key does not exist.
    Absent { key: String },
}

impl Compare {
    /// The key this condition reads.
    pub fn key(&self) -> &str {
        match self {
            Compare::Equals { key, .. } | Compare::Exists { key } | Compare::Absent { key } => key,
        }
    }

    /// Whether the condition holds given the key's current value.
    pub fn holds(&self, current: Option<&[u8]>) -> bool {
        match self {
            Compare::Equals { value, .. } => current == Some(value.as_slice()),
            Compare::Exists { .. } => current.is_some(),
            Compare::Absent { .. } => current.is_none(),
        }
    }
}

/// A write a transaction branch performs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    Put {
        key: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    Delete {
        key: String,
    },
}

/// An atomic multi-key transaction: if every compare holds, `success` runs, else `failure`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub success: Vec<TxnOp>,
    pub failure: Vec<TxnOp>,
}

impl Txn {
    /// Checks every key and value of the transaction, naming the first bad place.
    pub fn validate(&self) -> Result<(), KvError> {
        let count = self.compare.len() + self.success.len() + self.failure.len();
        if count > MAX_TXN_OPS {
            return Err(KvError::TxnTooLarge { count });
        }
        let bad = |path: String, e: KvError| KvError::InvalidTxn {
            path,
            reason: e.to_string(),
        };
        for (i, c) in self.compare.iter().enumerate() {
            validate_key(c.key()).map_err(|e| bad(format!("compare[{i}].key"), e))?;
            if let Compare::Equals { value, .. } = c {
                validate_value(value).map_err(|e| bad(format!("compare[{i}].value"), e))?;
            }
        }
        for (branch, ops) in [("success", &self.success), ("failure", &self.failure)] {
            for (i, op) in ops.iter().enumerate() {
                match op {
                    TxnOp::Put { key, value } => {
                        validate_key(key).map_err(|e| bad(format!("{branch}[{i}].key"), e))?;
                        validate_value(value)
                            .map_err(|e| bad(format!("{branch}[{i}].value"), e))?;
                    }
                    TxnOp::Delete { key } => {
                        validate_key(key).map_err(|e| bad(format!("{branch}[{i}].key"), e))?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert_eq!(validate_key(""), Err(KvError::EmptyKey));
        assert_eq!(validate_key("a\nb"), Err(KvError::KeyControlChar { at: 1 }));
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert_eq!(
            validate_key(&long),
            Err(KvError::KeyTooLong {
                len: MAX_KEY_BYTES + 1
            })
        );
        assert!(validate_key("users/42/name").is_ok());
        assert!(validate_key("ключ").is_ok());
    }

    #[test]
    fn txn_errors_name_the_place() {
        let txn = Txn {
            compare: vec![Compare::Exists { key: "a".into() }],
            success: vec![],
            failure: vec![
                TxnOp::Delete { key: "b".into() },
                TxnOp::Put {
                    key: String::new(),
                    value: vec![],
                },
            ],
        };
        let err = txn.validate().map(|_| ()).unwrap_err();
        assert_eq!(err.to_string(), "failure[1].key: key is empty");
    }

    #[test]
    fn compares_hold_as_documented() {
        let eq = Compare::Equals {
            key: "k".into(),
            value: b"v".to_vec(),
        };
        assert!(eq.holds(Some(b"v")));
        assert!(!eq.holds(Some(b"w")));
        assert!(!eq.holds(None));
        assert!(Compare::Exists { key: "k".into() }.holds(Some(b"")));
        assert!(Compare::Absent { key: "k".into() }.holds(None));
        assert!(!Compare::Absent { key: "k".into() }.holds(Some(b"")));
    }
}

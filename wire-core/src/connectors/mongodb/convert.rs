//! Between records and BSON documents, through relaxed extended JSON: `{"$oid": ...}`,
//! `{"$date": ...}` and the like become the BSON types they name and back.

use jaq_json::Val;
use mongodb::bson::{Bson, Document};

/// A document from extended JSON, which must be an object.
pub fn document(json: &serde_json::Value) -> Result<Document, String> {
    match Bson::try_from(json.clone()) {
        Ok(Bson::Document(d)) => Ok(d),
        Ok(other) => Err(format!(
            "a document must be a JSON object, not {:?}",
            other.element_type()
        )),
        Err(e) => Err(format!("not valid extended JSON: {e}")),
    }
}

/// A record's value as a document to store.
pub fn to_document(value: &Val) -> Result<Document, String> {
    if !matches!(value, Val::Obj(_)) {
        return Err("a record stored in MongoDB must be a JSON object".into());
    }
    let mut bytes = Vec::new();
    crate::pipeline::json::write_json(value, &mut bytes);
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("the record is not plain JSON ({e}): NaN or infinity?"))?;
    document(&json)
}

/// A BSON value as a record's value (relaxed extended JSON).
pub fn to_val(value: Bson) -> Result<Val, String> {
    let json = value.into_relaxed_extjson();
    let bytes = serde_json::to_vec(&json).map_err(|e| e.to_string())?;
    crate::pipeline::jq::parse_json(&bytes)
}

/// The record key for a document's `_id`: a string as it is, an ObjectId as its hex, any
/// other value as its relaxed extended JSON.
pub fn key_of(id: &Bson) -> Vec<u8> {
    match id {
        Bson::String(s) => s.clone().into_bytes(),
        Bson::ObjectId(o) => o.to_hex().into_bytes(),
        other => other
            .clone()
            .into_relaxed_extjson()
            .to_string()
            .into_bytes(),
    }
}

/// The value at a dotted path of a document.
pub fn get_path<'a>(doc: &'a Document, path: &str) -> Option<&'a Bson> {
    let mut parts = path.split('.');
    let mut here = doc.get(parts.next()?)?;
    for part in parts {
        here = match here {
            Bson::Document(d) => d.get(part)?,
            _ => return None,
        };
    }
    Some(here)
}

/// A BSON value as canonical extended JSON text (exact types: for tokens).
pub fn token_text(value: Bson) -> String {
    value.into_canonical_extjson().to_string()
}

/// The BSON value a [`token_text`] wrote.
pub fn from_token_text(text: &str) -> Result<Bson, String> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Bson::try_from(json).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, oid::ObjectId, DateTime};

    #[test]
    fn extended_json_round_trips_through_records() {
        let id = ObjectId::new();
        let original = doc! {
            "_id": id,
            "at": DateTime::from_millis(1_700_000_000_000),
            "n": 5_i64,
            "x": 1.5,
            "tags": ["a", "b"],
            "nested": {"ok": true},
        };
        let val = to_val(Bson::Document(original.clone())).unwrap();
        assert!(val
            .to_string()
            .contains(&format!(r#"{{"$oid":"{}"}}"#, id.to_hex())));
        let back = to_document(&val).unwrap();
        assert_eq!(back.get_object_id("_id").unwrap(), id);
        assert_eq!(
            back.get_datetime("at").unwrap(),
            original.get_datetime("at").unwrap()
        );
        assert_eq!(back.get("nested"), original.get("nested"));
        assert_eq!(key_of(&Bson::ObjectId(id)), id.to_hex().into_bytes());
        assert_eq!(key_of(&Bson::String("k".into())), b"k");
        assert_eq!(key_of(&Bson::Int32(7)), b"7");
    }

    #[test]
    fn only_objects_are_documents_and_tokens_keep_exact_types() {
        assert!(to_document(&crate::pipeline::jq::parse_json(b"[1]").unwrap()).is_err());
        let d = doc! {"n": 5_i64, "m": 5_i32};
        let text = token_text(Bson::Document(d.clone()));
        assert_eq!(from_token_text(&text).unwrap(), Bson::Document(d));
        assert_eq!(
            get_path(&doc! {"a": {"b": 2}}, "a.b"),
            Some(&Bson::Int32(2))
        );
        assert_eq!(get_path(&doc! {"a": 1}, "a.b"), None);
    }
}

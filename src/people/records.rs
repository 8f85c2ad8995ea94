//! Validation of People records: an object with a plausible `Email` and
//! flat values (strings, numbers, booleans, null).

use serde_json::{Map, Value};

use crate::identity::normalize_email;

pub const MAX_RECORDS: usize = 1000;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("a record must be a JSON object")]
    NotObject,
    #[error("Email is required")]
    MissingEmail,
    #[error("Email must be a string holding a valid address")]
    BadEmail,
    #[error("field {0:?} holds a nested object or array; values must be strings, numbers, booleans or null")]
    Nested(String),
    #[error("field names must be 1 to 128 characters")]
    BadFieldName,
}

/// Checks one record; returns the normalised email and the fields (with
/// `Email` set to the normalised address).
pub fn validate(v: Value) -> Result<(String, Map<String, Value>), RecordError> {
    let Value::Object(mut m) = v else {
        return Err(RecordError::NotObject);
    };
    // `Email` as the seed API spells it; `email` accepted as the same field.
    let raw = match m.remove("Email").or_else(|| m.remove("email")) {
        None | Some(Value::Null) => return Err(RecordError::MissingEmail),
        Some(Value::String(s)) => s,
        Some(_) => return Err(RecordError::BadEmail),
    };
    let email = normalize_email(&raw).map_err(|_| RecordError::BadEmail)?;
    for (k, v) in &m {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(RecordError::BadFieldName);
        }
        if v.is_object() || v.is_array() {
            return Err(RecordError::Nested(k.clone()));
        }
    }
    m.insert("Email".into(), Value::String(email.clone()));
    Ok((email, m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records() {
        let (e, m) = validate(
            json!({"Email": " Ann@X.io ", "Name": "Ann", "Age": 3, "Vip": true, "Note": null}),
        )
        .unwrap();
        assert_eq!(e, "ann@x.io");
        assert_eq!(m["Email"], "ann@x.io");
        assert_eq!(
            validate(json!({"Name": "x"})),
            Err(RecordError::MissingEmail)
        );
        assert_eq!(
            validate(json!({"Email": "nope"})),
            Err(RecordError::BadEmail)
        );
        assert_eq!(validate(json!({"Email": 5})), Err(RecordError::BadEmail));
        assert_eq!(
            validate(json!({"Email": "a@b.io", "x": {"y": 1}})),
            Err(RecordError::Nested("x".into()))
        );
        assert_eq!(
            validate(json!({"Email": "a@b.io", "x": [1]})),
            Err(RecordError::Nested("x".into()))
        );
        assert_eq!(validate(json!([1])), Err(RecordError::NotObject));
    }
}

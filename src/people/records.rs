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
    #[error("the record names Email more than once with different addresses")]
    ConflictingEmail,
    #[error("field names must be 1 to 128 characters")]
    BadFieldName,
}

/// Checks one record; returns the normalised email and the fields (with
/// `Email` set to the normalised address).
pub fn validate(v: Value) -> Result<(String, Map<String, Value>), RecordError> {
    let Value::Object(mut m) = v else {
        return Err(RecordError::NotObject);
    };
    // `Email` as the seed API spells it; the field name is matched without
    // regard to case, so `Email` and `email` are one field and a record
    // cannot store two addresses under it.
    let keys: Vec<String> = m
        .keys()
        .filter(|k| k.eq_ignore_ascii_case("email"))
        .cloned()
        .collect();
    let mut email: Option<String> = None;
    for k in keys {
        match m.remove(&k) {
            None | Some(Value::Null) => {}
            Some(Value::String(raw)) => {
                let e = normalize_email(&raw).map_err(|_| RecordError::BadEmail)?;
                if email.as_ref().is_some_and(|prev| *prev != e) {
                    return Err(RecordError::ConflictingEmail);
                }
                email = Some(e);
            }
            Some(_) => return Err(RecordError::BadEmail),
        }
    }
    let email = email.ok_or(RecordError::MissingEmail)?;
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
            validate(json!({"Email": "a@b.io", "email": "c@d.io"})),
            Err(RecordError::ConflictingEmail)
        );
        let (e, m) = validate(json!({"EMAIL": "A@b.io", "email": "a@b.io"})).unwrap();
        assert_eq!(e, "a@b.io");
        assert_eq!(m.len(), 1);
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

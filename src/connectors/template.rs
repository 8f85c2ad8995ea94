//! `${settings.x}`, `${credentials.x}` and `${access_token}` in catalog
//! templates.

use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0} is not set")]
pub struct Missing(pub String);

pub struct Vars<'a> {
    pub settings: &'a Map<String, Value>,
    pub credentials: &'a Map<String, Value>,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Replaces every reference; a reference to nothing is an error naming it.
pub fn render(template: &str, vars: &Vars<'_>) -> Result<String, Missing> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find('}') else {
            out.push_str(&rest[i..]);
            return Ok(out);
        };
        let name = &after[..j];
        let value = match name.split_once('.') {
            // A setting the provider assigns in its token response (Salesforce's
            // instance_url, Zoho's api_domain) is found among the credentials.
            Some(("settings", k)) => vars
                .settings
                .get(k)
                .and_then(text)
                .or_else(|| vars.credentials.get(k).and_then(text)),
            Some(("credentials", k)) => vars.credentials.get(k).and_then(text),
            None if name == "access_token" => vars.credentials.get("access_token").and_then(text),
            _ => None,
        };
        out.push_str(&value.ok_or_else(|| Missing(name.to_string()))?);
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders() {
        let s = json!({"base_url": "http://h:1", "n": 5})
            .as_object()
            .cloned()
            .unwrap();
        let c = json!({"access_token": "t"}).as_object().cloned().unwrap();
        let v = Vars {
            settings: &s,
            credentials: &c,
        };
        assert_eq!(
            render("${settings.base_url}/v1/me?n=${settings.n}", &v).unwrap(),
            "http://h:1/v1/me?n=5"
        );
        assert_eq!(render("Bearer ${access_token}", &v).unwrap(), "Bearer t");
        assert_eq!(
            render("${settings.nope}", &v),
            Err(Missing("settings.nope".into()))
        );
    }
}

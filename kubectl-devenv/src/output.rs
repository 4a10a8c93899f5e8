//! Printing objects as kubectl does: YAML documents separated by `---`, or one
//! JSON object (a `List` when there are several).

use serde_json::Value;

use crate::cli::ObjectFormat;
use crate::error::Error;

/// Renders objects in `format`. Deterministic: the same objects always give
/// the same text (the manifests in git are compared byte for byte).
pub fn render(objects: &[Value], format: ObjectFormat) -> Result<String, Error> {
    match format {
        ObjectFormat::Yaml => {
            let mut out = String::new();
            for (i, o) in objects.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                out.push_str(&serde_yaml::to_string(o).map_err(anyhow::Error::from)?);
            }
            Ok(out)
        }
        ObjectFormat::Json => {
            let value = match objects {
                [one] => one.clone(),
                many => serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "List",
                    "items": many,
                }),
            };
            let mut s = serde_json::to_string_pretty(&value).map_err(anyhow::Error::from)?;
            s.push('\n');
            Ok(s)
        }
    }
}

/// Prints objects to stdout.
pub fn print(objects: &[Value], format: ObjectFormat) -> Result<(), Error> {
    print!("{}", render(objects, format)?);
    Ok(())
}

/// Serializes typed objects for printing.
pub fn to_value<T: serde::Serialize>(object: &T) -> Result<Value, Error> {
    serde_json::to_value(object).map_err(|e| Error::Other(e.into()))
}

/// Replaces every value of a Secret's `data`/`stringData` with a marker, so
/// secret values never reach a terminal, a log or a CI transcript.
pub fn redact_secret(mut secret: Value) -> Value {
    for field in ["data", "stringData"] {
        if let Some(Value::Object(map)) = secret.get_mut(field) {
            for v in map.values_mut() {
                *v = Value::String("<redacted>".to_owned());
            }
        }
    }
    secret
}

/// Parses printed output back into objects: multi-document YAML, or JSON
/// (a `List` is unwrapped into its items). Used by tests and by `--dry-run`
/// consumers alike.
pub fn parse(text: &str) -> Result<Vec<Value>, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        let v: Value = serde_json::from_str(trimmed).map_err(|e| e.to_string())?;
        if v.get("kind").and_then(Value::as_str) == Some("List") {
            return Ok(v
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default());
        }
        return Ok(vec![v]);
    }
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v = <Value as serde::Deserialize>::deserialize(doc).map_err(|e| e.to_string())?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_documents_are_separated_and_parse_back() {
        let objs = vec![json!({"kind": "A", "n": 1}), json!({"kind": "B", "n": 2})];
        let text = render(&objs, ObjectFormat::Yaml).unwrap();
        assert_eq!(text.matches("---\n").count(), 1);
        assert_eq!(parse(&text).unwrap(), objs);
    }

    #[test]
    fn json_single_object_or_list() {
        let one = vec![json!({"kind": "A"})];
        assert_eq!(
            parse(&render(&one, ObjectFormat::Json).unwrap()).unwrap(),
            one
        );
        let two = vec![json!({"kind": "A"}), json!({"kind": "B"})];
        let text = render(&two, ObjectFormat::Json).unwrap();
        assert!(text.contains("\"kind\": \"List\""));
        assert_eq!(parse(&text).unwrap(), two);
    }

    #[test]
    fn secrets_are_redacted() {
        let s = redact_secret(json!({"kind": "Secret", "data": {"TOKEN": "c2VjcmV0"}}));
        assert_eq!(s["data"]["TOKEN"], "<redacted>");
        assert!(!s.to_string().contains("c2VjcmV0"));
    }
}

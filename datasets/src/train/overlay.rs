//! Config files laid over presets: keys a TOML file sets replace the preset's,
//! everything it leaves out keeps the preset's value (tables merge
//! recursively). Used by `lcd fit --config` and `morph fit --config`.
use serde::{de::DeserializeOwned, Serialize};

/// Parse `text` (TOML) laid over `base`. The error is the TOML parser's
/// message (unknown keys, wrong types), for the caller to wrap with the file.
pub fn toml_over<T: Serialize + DeserializeOwned>(base: &T, text: &str) -> Result<T, String> {
    let over: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut merged = toml::Table::try_from(base).map_err(|e| e.to_string())?;
    merge(&mut merged, over);
    toml::Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| e.to_string())
}

fn merge(dst: &mut toml::Table, src: toml::Table) {
    for (k, v) in src {
        match (dst.get_mut(&k), v) {
            (Some(toml::Value::Table(d)), toml::Value::Table(s)) => merge(d, s),
            (_, v) => {
                dst.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        a: usize,
        b: f64,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        name: String,
        inner: Inner,
    }

    #[test]
    fn keys_set_replace_the_rest_is_kept() {
        let base = Cfg {
            name: "quick".into(),
            inner: Inner { a: 3, b: 0.5 },
        };
        let c = toml_over(&base, "[inner]\na = 7\n").unwrap();
        assert_eq!(
            c,
            Cfg {
                name: "quick".into(),
                inner: Inner { a: 7, b: 0.5 }
            }
        );
        assert_eq!(toml_over(&base, "").unwrap(), base);
        let e = toml_over(&base, "[inner]\nc = 1\n").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        let e = toml_over(&base, "[inner]\na = \"x\"\n").unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
    }
}

//! Config files laid over presets: keys a TOML file sets replace the preset's,
//! everything it leaves out keeps the preset's value (tables merge
//! recursively). Used by `lcd fit --config`, `morph fit --config` and the
//! flow-expansion settings of `cellmol expand fe|actflow --config`.
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

/// Whether `d` → `s` switches the variant of an externally tagged enum
/// (`{smoothed = {…}}` → `{rejection = {…}}`): one key each, different.
/// Such a table replaces the preset's instead of merging into it.
fn switches_variant(d: &toml::Table, s: &toml::Table) -> bool {
    d.len() == 1 && s.len() == 1 && d.keys().next() != s.keys().next()
}

fn merge(dst: &mut toml::Table, src: toml::Table) {
    for (k, v) in src {
        match (dst.get_mut(&k), v) {
            (Some(toml::Value::Table(d)), toml::Value::Table(s)) if !switches_variant(d, &s) => {
                merge(d, s)
            }
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

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        Smoothed { scale: f64 },
        Rejection { n: usize },
        Off,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct WithMode {
        mode: Mode,
        k: usize,
    }

    #[test]
    fn enum_variants_switch_or_merge() {
        let base = WithMode {
            mode: Mode::Smoothed { scale: 0.1 },
            k: 3,
        };
        let c = toml_over(&base, "[mode.rejection]\nn = 8\n").unwrap();
        assert_eq!(c.mode, Mode::Rejection { n: 8 });
        assert_eq!(c.k, 3);
        let c = toml_over(&base, "mode = \"off\"\n").unwrap();
        assert_eq!(c.mode, Mode::Off);
        let c = toml_over(&base, "k = 5\n").unwrap();
        assert_eq!(
            c,
            WithMode {
                mode: Mode::Smoothed { scale: 0.1 },
                k: 5
            }
        );
    }
}

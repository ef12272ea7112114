//! Layers of TOML: defaults, a config file, `--set key=value`; every layer may only set keys
//! the defaults have.

use anyhow::{Result, anyhow, bail};

/// The first line of a TOML error, which holds the line and column and the reason.
pub fn one_line(error: &impl std::fmt::Display) -> String {
    let text = error.to_string();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or_default().trim().to_string();
    match lines.next_back() {
        Some(last) if !last.contains('|') => format!("{first}: {}", last.trim()),
        _ => first,
    }
}

/// Lays `overrides` over `base`, section by section; a section or key that `base` lacks is an
/// error naming `origin` and the nearest valid key.
pub fn merge(base: &mut toml::Table, overrides: toml::Table, origin: &str) -> Result<()> {
    for (section, value) in overrides {
        let Some(toml::Value::Table(keys)) = base.get_mut(&section) else {
            bail!(
                "{origin}: unknown section [{section}]{}",
                suggest(&section, base.keys())
            );
        };
        let toml::Value::Table(value) = value else {
            bail!("{origin}: `{section}` must be a section ([{section}]), not a value");
        };
        for (key, v) in value {
            let Some(slot) = keys.get_mut(&key) else {
                bail!(
                    "{origin}: unknown key {section}.{key}{}",
                    suggest(&key, keys.keys())
                );
            };
            *slot = v;
        }
    }
    Ok(())
}

/// Applies one `section.key=value`; the value is read as TOML, or as a plain string when it is
/// not valid TOML.
pub fn apply_set(table: &mut toml::Table, set: &str) -> Result<()> {
    let Some((key, raw)) = set.split_once('=') else {
        bail!("--set {set:?}: expected section.key=value");
    };
    let key = key.trim();
    let Some((section, name)) = key.split_once('.') else {
        bail!("--set {set:?}: expected section.key=value, e.g. training.epochs=10");
    };
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut parsed) => parsed.remove("v").expect("the key just parsed"),
        // A number TOML cannot hold is no string either.
        Err(e) if looks_numeric(raw) => {
            return Err(anyhow!(
                "--set {key}={raw}: not a number TOML can hold ({})",
                one_line(&e)
            ));
        }
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let mut overrides = toml::Table::new();
    overrides.insert(
        section.to_string(),
        toml::Value::Table(toml::Table::from_iter([(name.to_string(), value)])),
    );
    merge(table, overrides, "--set")
}

/// Whether `raw` is written as a number: digits, with a sign, point or exponent.
fn looks_numeric(raw: &str) -> bool {
    let raw = raw.trim();
    let digits = raw.trim_start_matches(['-', '+']);
    digits.starts_with(|c: char| c.is_ascii_digit())
        && raw
            .chars()
            .all(|c| c.is_ascii_digit() || "+-._eE".contains(c))
}

/// ", did you mean `x`?" for the nearest of `options` by edit distance, if one is near.
fn suggest<'a>(name: &str, options: impl Iterator<Item = &'a String>) -> String {
    options
        .map(|o| (edit_distance(name, o), o))
        .filter(|(d, o)| *d <= 3.max(o.len() / 3))
        .min()
        .map(|(_, o)| format!(", did you mean `{o}`?"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

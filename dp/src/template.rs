//! The dataplane template: `{{ name }}` placeholders in `--dataplane`/`--dataplane-file`
//! replaced by the values of `-v name=value` (Kuma's mustache variables, without sections,
//! partials or escaping: kuma-dp templates only ever use plain variables).
//!
//! Pure text in, text out; no I/O. A placeholder without a value is an error naming it, so a
//! forgotten `-v` never registers a Dataplane with an empty address or port.

use std::collections::BTreeMap;

/// Why a template could not be rendered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error(
        "dataplane template: variable {{{{ {name} }}}} has no value (pass --dataplane-var {name}=VALUE)"
    )]
    Missing { name: String },
    #[error("dataplane template: unclosed {{{{ at byte {at}")]
    Unclosed { at: usize },
    #[error("dataplane template: {{{{ {text} }}}} at byte {at} is not a variable name")]
    BadName { text: String, at: usize },
    #[error("--dataplane-var {given:?}: expected NAME=VALUE")]
    BadVar { given: String },
}

/// Parses one `-v name=value` (the value may contain `=`; the name must be a variable name).
pub fn parse_var(given: &str) -> Result<(String, String), TemplateError> {
    match given.split_once('=') {
        Some((name, value)) if is_name(name.trim()) => {
            Ok((name.trim().to_string(), value.to_string()))
        }
        _ => Err(TemplateError::BadVar {
            given: given.to_string(),
        }),
    }
}

fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// `template` with every `{{ name }}` (spaces optional) replaced by its value in `vars`.
pub fn render(template: &str, vars: &BTreeMap<String, String>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    let mut offset = 0;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(TemplateError::Unclosed { at: offset + start });
        };
        let name = after[..end].trim();
        if !is_name(name) {
            return Err(TemplateError::BadName {
                text: name.to_string(),
                at: offset + start,
            });
        }
        let value = vars.get(name).ok_or_else(|| TemplateError::Missing {
            name: name.to_string(),
        })?;
        out.push_str(value);
        let consumed = start + 2 + end + 2;
        offset += consumed;
        rest = &rest[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn replaces_every_placeholder_with_or_without_spaces() {
        let template = "name: {{ name }}\naddress: {{address}}\nport: {{  port }}\nagain: {{name}}";
        let out = render(
            template,
            &vars(&[("name", "web-1"), ("address", "10.0.0.1"), ("port", "8080")]),
        )
        .unwrap();
        assert_eq!(
            out,
            "name: web-1\naddress: 10.0.0.1\nport: 8080\nagain: web-1"
        );
    }

    #[test]
    fn text_without_placeholders_is_unchanged_and_extra_vars_are_ignored() {
        let template = "type: Dataplane\nmesh: default\n";
        assert_eq!(render(template, &vars(&[("x", "y")])).unwrap(), template);
    }

    #[test]
    fn a_missing_value_names_the_variable() {
        let err = render("port: {{ port }}", &BTreeMap::new()).unwrap_err();
        assert_eq!(
            err,
            TemplateError::Missing {
                name: "port".into()
            }
        );
        assert!(
            err.to_string().contains("--dataplane-var port=VALUE"),
            "{err}"
        );
    }

    #[test]
    fn broken_placeholders_are_errors() {
        assert_eq!(
            render("a: {{ port", &BTreeMap::new()).unwrap_err(),
            TemplateError::Unclosed { at: 3 }
        );
        assert_eq!(
            render("a: {{ a b }}", &vars(&[("a", "1")])).unwrap_err(),
            TemplateError::BadName {
                text: "a b".into(),
                at: 3
            }
        );
    }

    #[test]
    fn vars_are_name_equals_value() {
        assert_eq!(
            parse_var("port=8080").unwrap(),
            ("port".into(), "8080".into())
        );
        assert_eq!(parse_var("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_var("empty=").unwrap(), ("empty".into(), "".into()));
        for bad in ["port", "=1", "a b=1"] {
            assert!(parse_var(bad).is_err(), "{bad}");
        }
    }
}

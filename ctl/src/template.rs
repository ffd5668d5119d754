//! `kumactl apply -v key=value`: each document is rendered as a mustache template, as Kuma
//! does with `hoisie/mustache` (`pkg/util/template`).
//!
//! Supported: `{{ name }}` (HTML-escaped like Go's `template.HTMLEscape`), `{{{ name }}}` and
//! `{{& name }}` (raw), dotted names (`-v a.b=x` fills `{{ a.b }}`), `{{! comments }}`, and
//! `{{#name}}…{{/name}}` / `{{^name}}…{{/name}}` sections on whether a value is set. A name
//! without a value renders as nothing, as in mustache.

use std::collections::BTreeMap;

/// The `-v` values, by their full dotted name.
#[derive(Debug, Default, Clone)]
pub struct Vars(BTreeMap<String, String>);

impl Vars {
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Vars(pairs.into_iter().collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn lookup(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// Renders `template` with `vars`.
pub fn render(template: &str, vars: &Vars) -> String {
    let mut out = String::with_capacity(template.len());
    render_into(template, vars, &mut out);
    out
}

fn render_into(mut rest: &str, vars: &Vars, out: &mut String) {
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        // triple mustache
        if let Some(inner) = after.strip_prefix('{')
            && let Some(end) = inner.find("}}}")
        {
            out.push_str(vars.lookup(inner[..end].trim()).unwrap_or(""));
            rest = &inner[end + 3..];
            continue;
        }
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return;
        };
        let tag = after[..end].trim();
        rest = &after[end + 2..];
        match tag.chars().next() {
            Some('!') => {}
            Some('&') => out.push_str(vars.lookup(tag[1..].trim()).unwrap_or("")),
            Some(kind @ ('#' | '^')) => {
                let name = tag[1..].trim();
                let (body, remaining) = split_section(rest, name);
                rest = remaining;
                let set = vars.lookup(name).is_some_and(|v| !v.is_empty());
                if set == (kind == '#') {
                    render_into(body, vars, out);
                }
            }
            Some('/') => {}
            _ => html_escape(vars.lookup(tag).unwrap_or(""), out),
        }
    }
    out.push_str(rest);
}

/// The body of a section named `name` and the text after its closing tag (nesting aware).
fn split_section<'a>(text: &'a str, name: &str) -> (&'a str, &'a str) {
    let mut depth = 0usize;
    let mut pos = 0;
    while let Some(found) = text[pos..].find("{{") {
        let start = pos + found;
        let Some(end) = text[start + 2..].find("}}") else {
            break;
        };
        let tag = text[start + 2..start + 2 + end].trim();
        let close = start + 2 + end + 2;
        if let Some(opened) = tag.strip_prefix('#').or_else(|| tag.strip_prefix('^'))
            && opened.trim() == name
        {
            depth += 1;
        } else if let Some(closed) = tag.strip_prefix('/')
            && closed.trim() == name
        {
            if depth == 0 {
                return (&text[..start], &text[close..]);
            }
            depth -= 1;
        }
        pos = close;
    }
    (text, "")
}

/// Go's `text/template.HTMLEscape`.
fn html_escape(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        Vars::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn substitutes_placeholders_like_kuma() {
        let v = vars(&[("address", "2.2.2.2"), ("var.with.dots", "x")]);
        assert_eq!(
            render("address: \"{{ address }}\"\nother: {{address}}", &v),
            "address: \"2.2.2.2\"\nother: 2.2.2.2"
        );
        assert_eq!(render("a: {{ var.with.dots }}", &v), "a: x");
        assert_eq!(render("missing: '{{ nope }}'", &v), "missing: ''");
    }

    #[test]
    fn escaping_and_raw() {
        let v = vars(&[("q", "a&b<'\">")]);
        assert_eq!(render("{{q}}", &v), "a&amp;b&lt;&#39;&#34;&gt;");
        assert_eq!(render("{{{ q }}}", &v), "a&b<'\">");
        assert_eq!(render("{{& q}}", &v), "a&b<'\">");
    }

    #[test]
    fn comments_and_sections() {
        let v = vars(&[("on", "yes")]);
        assert_eq!(render("a{{! note }}b", &v), "ab");
        assert_eq!(render("{{#on}}x{{/on}}{{^on}}y{{/on}}", &v), "x");
        assert_eq!(render("{{#off}}x{{/off}}{{^off}}y{{/off}}", &v), "y");
        assert_eq!(
            render("no tags {{ unterminated", &v),
            "no tags {{ unterminated"
        );
    }
}

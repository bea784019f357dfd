//! The page: one HTML file with its style and script inlined, so nothing is fetched from
//! anywhere; its content security policy says so to the browser as well.

use serde::Serialize;

use super::view::{Detail, Overview};

const TEMPLATE: &str = include_str!("page/index.html");
const STYLE: &str = include_str!("page/style.css");
const SCRIPT: &str = include_str!("page/app.js");

/// Served: the page may talk only to the server it came from.
const SERVED_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'";
/// A report file: no connection at all.
const FILE_POLICY: &str =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:";

/// The page for run `tag`, which follows the run through the server's API.
pub fn served(tag: &str) -> String {
    fill(tag, SERVED_POLICY, "")
}

/// Everything a report file holds: the overview and every experiment opened.
#[derive(Serialize)]
pub struct Inline<'a> {
    pub overview: Overview<'a>,
    pub details: std::collections::BTreeMap<usize, Detail<'a>>,
    /// When the report was written.
    pub written: String,
}

/// The page with `data` inside it: it opens from a file, with no server and no network.
pub fn self_contained(tag: &str, data: &Inline) -> String {
    let json = serde_json::to_string(data).expect("the page's data serialises");
    fill(
        tag,
        FILE_POLICY,
        &format!("window.AUTORESEARCH_DATA = {};", script_safe(&json)),
    )
}

fn fill(tag: &str, policy: &str, data: &str) -> String {
    // The tag is letters, digits, '-' and '_' (a `Tag`), so it needs no escaping. The data goes
    // in last: a diff or a log line may hold a placeholder's text, which must stay text.
    TEMPLATE
        .replace("{{POLICY}}", policy)
        .replace("{{TAG}}", tag)
        .replace("{{STYLE}}", STYLE)
        .replace("{{SCRIPT}}", SCRIPT)
        .replace("{{DATA}}", data)
}

/// JSON inside a `<script>` element: a `</script>` (or `<!--`) in a diff or a log line must not
/// end the element, and U+2028/9 are line ends to older JavaScript parsers.
fn script_safe(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

#[cfg(test)]
mod tests {
    use super::super::view::Folder;
    use super::*;

    #[test]
    fn data_in_a_script_cannot_close_it() {
        let json = serde_json::to_string(&"</script><script>alert(1)</script>").unwrap();
        let safe = script_safe(&json);
        assert!(!safe.contains("</script"), "{safe}");
        let back: String = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, "</script><script>alert(1)</script>");
    }

    #[test]
    fn a_placeholder_in_the_data_stays_data() {
        let overview = Folder {
            tag: "t".into(),
            records: Vec::new(),
            pending: None,
            live: None,
        };
        let mut inline = overview.inline();
        inline.written = "{{SCRIPT}} {{STYLE}}".into();
        let page = self_contained("t", &inline);
        assert_eq!(page.matches("\"use strict\"").count(), 1, "the script once");
        assert!(page.contains("\"written\":\"{{SCRIPT}} {{STYLE}}\""));
    }

    #[test]
    fn the_page_has_everything_inside_and_says_where_it_may_connect() {
        let page = served("night-1");
        for placeholder in [
            "{{POLICY}}",
            "{{TAG}}",
            "{{STYLE}}",
            "{{DATA}}",
            "{{SCRIPT}}",
        ] {
            assert!(
                !page.contains(placeholder),
                "{placeholder} left in the page"
            );
        }
        assert!(page.contains("connect-src 'self'"));
        assert!(!page.contains("src=\"http"), "an external script");
        assert!(!page.contains("href=\"http"), "an external style or link");
        assert!(page.contains("<title>autoresearch night-1</title>"));
    }
}

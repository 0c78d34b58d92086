//! Removing hidden tools from a `tools/list` response.
//!
//! The response is spliced, not re-serialized: the bytes before and after
//! the `tools` array, and every byte of each tool that stays, are the
//! server's own. Only the array's separators are rewritten.

use crate::wire::json::Raw;

/// Returns the line with the tools `hides` picks (by name, when it is a
/// string, and the tool's JSON) taken out of `result.tools`, or `None`
/// when nothing is hidden (forward as is).
///
/// `result` must be a slice of `line`, as the envelope parser hands it out.
/// The tools are walked in place and the kept ones copied once: a huge page
/// costs one copy of itself, however many tools it lists.
pub fn filter(
    line: &[u8],
    result: Raw<'_>,
    mut hides: impl FnMut(Option<&str>, Raw<'_>) -> bool,
) -> Option<Vec<u8>> {
    let tools_raw = result.member("tools")?;
    let start = offset_in(line, tools_raw.get())?;
    let end = start + tools_raw.get().len();
    let mut out: Option<Vec<u8>> = None;
    let mut kept = 0usize;
    for (i, tool) in tools_raw.items().enumerate() {
        // A tool without a readable name (not a string, a lone surrogate)
        // cannot be matched by a rule, but `--pin` withholds it.
        let name = tool.member("name").and_then(Raw::as_str);
        let hidden = hides(name.as_deref(), tool);
        if hidden && out.is_none() {
            // The first hidden tool: the page is rewritten from here on,
            // starting with the tools before it.
            let mut page = Vec::with_capacity(line.len());
            page.extend_from_slice(&line[..start]);
            page.push(b'[');
            for (j, before) in tools_raw.items().take(i).enumerate() {
                if j > 0 {
                    page.push(b',');
                }
                page.extend_from_slice(before.get().as_bytes());
            }
            kept = i;
            out = Some(page);
        }
        match &mut out {
            Some(page) if !hidden => {
                if kept > 0 {
                    page.push(b',');
                }
                page.extend_from_slice(tool.get().as_bytes());
                kept += 1;
            }
            _ => {}
        }
    }
    let mut page = out?;
    page.push(b']');
    page.extend_from_slice(&line[end..]);
    Some(page)
}

/// Where `part`, a sub-slice of `whole`, starts in it.
fn offset_in(whole: &[u8], part: &str) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start + part.len() <= whole.len()).then_some(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::jsonrpc::{parse, Message, Strictness};

    fn run(line: &str, hidden: &[&str]) -> Option<String> {
        let Message::Response {
            result: Some(result),
            ..
        } = parse(line.as_bytes(), Strictness::Envelope).unwrap()
        else {
            panic!("not a response")
        };
        filter(line.as_bytes(), result, |n, _| {
            n.is_some_and(|n| hidden.contains(&n))
        })
        .map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn hidden_tools_go_and_every_other_byte_stays() {
        let line = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[ {"name":"a","inputSchema":{"type":"object"},"x":1.50} , {"name":"b"}, {"name":"c","description":"keep \u00e9"} ],"nextCursor":"opaque=="}}"#;
        assert_eq!(
            run(line, &["b"]).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","inputSchema":{"type":"object"},"x":1.50},{"name":"c","description":"keep \u00e9"}],"nextCursor":"opaque=="}}"#
        );
        assert_eq!(
            run(line, &["a", "b", "c"]).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"nextCursor":"opaque=="}}"#
        );
    }

    #[test]
    fn nothing_hidden_means_the_line_is_forwarded_untouched() {
        let line = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}]}}"#;
        assert_eq!(run(line, &["z"]), None);
        assert_eq!(run(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#, &["a"]), None);
    }

    #[test]
    fn escaped_names_are_matched_decoded() {
        let line =
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"del\u0065te"},{"name":"ok"}]}}"#;
        assert_eq!(
            run(line, &["delete"]).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"ok"}]}}"#
        );
    }
}

//! Tool-name patterns where `*` matches any run of characters (none too).
//!
//! Precedence between patterns is by their number of literal characters,
//! so two patterns with the same count that can match one name would make
//! the choice arbitrary; [`overlap`] finds such pairs when the policy loads.

/// A pattern, as its literal pieces between stars.
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: String,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.to_owned(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// How specific the pattern is: the characters that are not `*`.
    pub fn literal_len(&self) -> usize {
        self.pattern.chars().filter(|&c| c != '*').count()
    }

    pub fn matches(&self, name: &str) -> bool {
        let mut parts = self.pattern.split('*');
        let first = parts.next().unwrap_or("");
        let Some(mut rest) = name.strip_prefix(first) else {
            return false;
        };
        let middle: Vec<&str> = parts.collect();
        let Some((last, middle)) = middle.split_last() else {
            return rest.is_empty(); // no star at all: an exact name
        };
        for part in middle {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

/// Whether some name matches both patterns.
///
/// A dynamic program over positions in both: a star may match nothing, or
/// swallow the other pattern's next symbol (a literal, or all its star can
/// produce).
pub fn overlap(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // can[i][j]: the suffixes a[i..] and b[j..] match a common string.
    let mut can = vec![vec![false; b.len() + 1]; a.len() + 1];
    for i in (0..=a.len()).rev() {
        for j in (0..=b.len()).rev() {
            can[i][j] = match (a.get(i), b.get(j)) {
                (None, None) => true,
                (Some('*'), _) => can[i + 1][j] || (j < b.len() && can[i][j + 1]),
                (_, Some('*')) => can[i][j + 1] || (i < a.len() && can[i + 1][j]),
                (Some(x), Some(y)) => x == y && can[i + 1][j + 1],
                _ => false,
            };
        }
    }
    can[0][0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let cases = [
            ("retry_*", "retry_deploy", true),
            ("retry_*", "retry_", true),
            ("retry_*", "xretry_deploy", false),
            ("*_deploy", "retry_deploy", true),
            ("*", "", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("a*a", "a", false),
            ("*delete*", "flowforge_delete_run", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(Glob::new(pattern).matches(name), want, "{pattern} ~ {name}");
        }
    }

    #[test]
    fn overlapping_patterns() {
        let cases = [
            ("retry_*", "*_deploy", true),
            ("a*", "b*", false),
            ("*a", "*b", false),
            ("a*", "*b", true),
            ("*x*", "*y*", true),
            ("ab*", "a*c", true),
            ("a*b", "a*c", false),
            ("*", "anything", true),
        ];
        for (a, b, want) in cases {
            assert_eq!(overlap(a, b), want, "{a} & {b}");
            assert_eq!(overlap(b, a), want, "{b} & {a}");
        }
    }
}

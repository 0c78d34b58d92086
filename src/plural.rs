//! A count and its noun as a person reads them: "1 bucket", "2 buckets".

use std::fmt::Display;

/// `n` and `noun`, the noun in the plural (an added "s") unless `n` is
/// one: `count(1, "tool")` is "1 tool", `count(0, "tool")` "0 tools".
pub fn count<N: Display + TryInto<u64> + Copy>(n: N, noun: &str) -> String {
    if n.try_into().ok() == Some(1) {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(count(1usize, "bucket"), "1 bucket");
        assert_eq!(count(0usize, "bucket"), "0 buckets");
        assert_eq!(count(2u64, "session"), "2 sessions");
        assert_eq!(count(11u32, "line"), "11 lines");
    }
}

//! JSON validation in one pass, made for the relay's hot path.
//!
//! A line from the client is checked in full (every string decoded,
//! duplicate keys refused at any depth, nesting bounded) and its top-level
//! members, and those of its `params`, handed out as slices of the line,
//! in a single scan. serde_json needed three scans for the same (the
//! envelope, a strict walk, then the `params`), which made parsing most of
//! toolwarden's cost per message.
//!
//! Values are handed out as [`Raw`]: a slice of text this module validated,
//! so later readers (the tool name, the arguments) can walk it without
//! checking it again. Nothing here builds a tree or copies a value.
//!
//! The scan reads bytes, and checks UTF-8 on the way: outside strings the
//! grammar allows ASCII only, and inside them a byte above 0x7f stops the
//! fast scan like a quote does, so only strings that hold one are checked,
//! and only from there. A separate pass over the whole line cost about a
//! quarter of a large message's check. Text comes out of the scan only
//! from what it has passed ([`checked`]), which is where the one `unsafe`
//! is.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde_json::value::RawValue;

/// How deep arrays and objects may nest under [`Check::Strict`]: serde_json
/// refuses a 128th level, and what passes here must parse there.
pub const MAX_DEPTH: usize = 127;

/// How many keys the objects open at one point of a document may hold in
/// all under [`Check::Strict`]: each is kept (32 bytes) until its object
/// closes, to find duplicates, so that a line of one object with millions
/// of short keys would take six times its size. This bounds them at 8 MiB.
pub const MAX_OPEN_KEYS: usize = 1 << 18;

/// How deep arrays and objects may nest under [`Check::Syntax`] (the
/// server's lines, and the second look at a client line that failed the
/// strict check): each open level costs the scan 16 bytes of heap, so an
/// unbounded depth let a 60 MiB line of `[` take about 500 MiB. No client
/// reads deeper documents: Python's `json` stops near 1,000 levels and
/// serde_json at 128.
pub const SYNTAX_MAX_DEPTH: usize = 1000;

/// How much a document is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// The grammar, plus: duplicate keys are refused in every object,
    /// `\u` escapes must pair surrogates, nesting stops at [`MAX_DEPTH`],
    /// and numbers must fit an f64. What passes reads the same in every
    /// parser: one that keeps the first of two keys and one that keeps the
    /// last see one document.
    Strict,
    /// The JSON grammar (RFC 8259), what serde_json accepts when it only
    /// skips a value, with nesting bounded at [`SYNTAX_MAX_DEPTH`].
    Syntax,
}

/// Why a document was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not JSON.
    Syntax,
    /// JSON that [`Check::Strict`] refuses, other than a duplicate key: a
    /// lone surrogate, nesting too deep, more keys open than
    /// [`MAX_OPEN_KEYS`], a number beyond f64. Under
    /// [`Check::Syntax`], only nesting deeper than [`SYNTAX_MAX_DEPTH`].
    Strict,
    /// A key repeated within one object ([`Check::Strict`] only).
    Duplicate,
    /// JSON, but not an object where one was asked for.
    NotObject,
    /// A member the caller refused.
    Member,
}

/// A refused document. Boxed, so that the parser's results stay small on
/// the path where nothing goes wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(Box<Inner>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Inner {
    kind: ErrorKind,
    at: usize,
    message: String,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// Byte offset in the text where the problem was seen.
    pub fn at(&self) -> usize {
        self.0.at
    }

    /// 1-based line and column (in bytes) of [`Error::at`] within `text`.
    pub fn line_column(&self, text: &str) -> (usize, usize) {
        let before = &text.as_bytes()[..self.at().min(text.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = before.len()
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
        (line, column + 1)
    }

    /// The message without a position.
    pub fn message(&self) -> &str {
        &self.0.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.0.message, self.0.at)
    }
}

impl std::error::Error for Error {}

/// A JSON value as its text: a slice of a document this module validated
/// (or serde_json did, for [`From<&RawValue>`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Raw<'a>(&'a str);

impl fmt::Debug for Raw<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl<'a> From<&'a RawValue> for Raw<'a> {
    fn from(raw: &'a RawValue) -> Raw<'a> {
        Raw(raw.get())
    }
}

impl<'a> Raw<'a> {
    /// Validates `text` as one JSON value of any kind (grammar only).
    pub fn parse(text: &'a str) -> Result<Raw<'a>, Error> {
        validate(text.as_bytes(), Check::Syntax)?;
        Ok(Raw(text.trim_matches([' ', '\t', '\n', '\r'])))
    }

    pub fn get(self) -> &'a str {
        self.0
    }

    /// An owned copy, for what must outlive the line.
    pub fn to_buf(self) -> RawBuf {
        let bytes = self.0.as_bytes();
        let mut inline = [0u8; INLINE];
        match inline.get_mut(..bytes.len()) {
            Some(head) => {
                head.copy_from_slice(bytes);
                RawBuf(Stored::Inline(bytes.len() as u8, inline))
            }
            None => RawBuf(Stored::Heap(self.0.into())),
        }
    }

    /// A copy as serde_json's raw value, to be written inside other JSON.
    pub fn to_raw_value(self) -> Box<RawValue> {
        // serde_json's RawValue checks the grammar only, which this text
        // passed already (the fuzz target `parse_line` holds this).
        RawValue::from_string(self.0.to_owned()).expect("validated JSON is a RawValue")
    }

    /// The value of a JSON string, decoded; `None` for anything else, and
    /// for a string with a lone surrogate (it has no Rust `str`).
    pub fn as_str(self) -> Option<Cow<'a, str>> {
        let inner = self.0.strip_prefix('"')?.strip_suffix('"')?;
        if !inner.contains('\\') {
            return Some(Cow::Borrowed(inner));
        }
        decode(inner).map(Cow::Owned)
    }

    /// At most the first `max` bytes of a JSON string's value, decoded
    /// (cut before an escape or a character that would cross `max`), and
    /// how many bytes of the string's text are left out; `None` for
    /// anything but a string. A huge string costs no more than `max`.
    pub fn str_prefix(self, max: usize) -> Option<(Cow<'a, str>, usize)> {
        let inner = self.0.strip_prefix('"')?.strip_suffix('"')?;
        let b = inner.as_bytes();
        let mut cut = 0;
        while cut < b.len() {
            let step = match b[cut] {
                // `\uD83D\uDE00`: a pair is one character.
                b'\\' if b.get(cut + 1) == Some(&b'u') => {
                    let high = inner
                        .get(cut + 2..cut + 6)
                        .and_then(|h| u16::from_str_radix(h, 16).ok())
                        .is_some_and(|u| (0xD800..0xDC00).contains(&u));
                    if high {
                        12
                    } else {
                        6
                    }
                }
                b'\\' => 2,
                c => utf8_len(c),
            };
            if cut + step > max {
                break;
            }
            cut = (cut + step).min(b.len());
        }
        let head = &inner[..cut];
        let text = if head.contains('\\') {
            decode(head).map_or(Cow::Borrowed(head), Cow::Owned)
        } else {
            Cow::Borrowed(head)
        };
        Some((text, b.len() - cut))
    }

    /// Whether this is an object.
    pub fn is_object(self) -> bool {
        self.0.starts_with('{')
    }

    /// The members of an object, keys decoded; nothing for other values.
    pub fn members(self) -> Members<'a> {
        let b = self.0.as_bytes();
        let mut i = skip_ws(b, 0);
        let open = b.get(i) == Some(&b'{');
        if open {
            i += 1;
        }
        Members {
            text: self.0,
            i,
            done: !open,
        }
    }

    /// The keys of an object as they are written, quotes and escapes
    /// included, in the order of [`Raw::members`].
    pub fn raw_keys(self) -> impl Iterator<Item = &'a str> {
        let text = self.0;
        let mut members = self.members();
        std::iter::from_fn(move || {
            let b = text.as_bytes();
            let start = skip_ws(b, members.i);
            members.next()?;
            let (end, _) = skip_string(b, start);
            Some(&text[start..end])
        })
    }

    /// The items of an array; nothing for other values.
    pub fn items(self) -> Items<'a> {
        let b = self.0.as_bytes();
        let i = skip_ws(b, 0);
        let open = b.get(i) == Some(&b'[');
        Items {
            text: self.0,
            i: if open { skip_ws(b, i + 1) } else { i },
            done: !open,
        }
    }

    /// How many values this holds, itself included, counted without
    /// building them: what parsing it into a tree would allocate for.
    pub fn count_values(self) -> usize {
        let b = self.0.as_bytes();
        let mut count = 1;
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'"' => {
                    i = skip_string(b, i).0;
                    continue;
                }
                // Each `,` and `:` starts another value, and so does the
                // first item of a container that is not empty.
                b',' => count += 1,
                b'[' | b'{' => {
                    let next = skip_ws(b, i + 1);
                    if !matches!(b.get(next), Some(b']' | b'}')) {
                        count += 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        count
    }

    /// The value at a JSON pointer (RFC 6901: `/a/0/b`, `~1` for `/`,
    /// `~0` for `~`); "" is the value itself.
    pub fn pointer(self, pointer: &str) -> Option<Raw<'a>> {
        if pointer.is_empty() {
            return Some(self);
        }
        let mut here = self;
        for token in pointer.strip_prefix('/')?.split('/') {
            let token = token.replace("~1", "/").replace("~0", "~");
            here = match here.get().as_bytes().first() {
                Some(b'{') => here.member(&token)?,
                Some(b'[') => {
                    let index: usize = token.parse().ok()?;
                    here.items().nth(index)?
                }
                _ => return None,
            };
        }
        Some(here)
    }

    /// One member of an object, by its (decoded) key. When a key repeats
    /// (only in text that did not pass [`Check::Strict`]) the last wins,
    /// as in serde_json.
    pub fn member(self, name: &str) -> Option<Raw<'a>> {
        self.members()
            .filter(|(key, _)| key == name)
            .last()
            .map(|(_, value)| value)
    }
}

/// An owned [`Raw`]. Most are request ids of a few bytes, kept inline, so
/// that holding a request in flight costs no allocation.
#[derive(Clone, PartialEq, Eq)]
pub struct RawBuf(Stored);

/// Texts up to this long are kept inline.
const INLINE: usize = 22;

#[derive(Clone, PartialEq, Eq)]
enum Stored {
    Inline(u8, [u8; INLINE]),
    Heap(Box<str>),
}

impl RawBuf {
    pub fn raw(&self) -> Raw<'_> {
        match &self.0 {
            // Copied whole from a `&str`, so this cannot fail.
            Stored::Inline(len, bytes) => Raw(std::str::from_utf8(&bytes[..usize::from(*len)])
                .expect("an inline copy of a str is UTF-8")),
            Stored::Heap(text) => Raw(text),
        }
    }
}

impl fmt::Debug for RawBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw().get())
    }
}

/// The items of a validated array, in order. See [`Raw::items`].
pub struct Items<'a> {
    text: &'a str,
    i: usize,
    done: bool,
}

impl<'a> Iterator for Items<'a> {
    type Item = Raw<'a>;

    fn next(&mut self) -> Option<Raw<'a>> {
        let b = self.text.as_bytes();
        if self.done || matches!(b.get(self.i), Some(b']') | None) {
            self.done = true;
            return None;
        }
        let start = self.i;
        self.i = skip_value(b, self.i);
        let item = Raw(&self.text[start..self.i]);
        self.i = skip_ws(b, self.i);
        if b.get(self.i) == Some(&b',') {
            self.i = skip_ws(b, self.i + 1);
        }
        Some(item)
    }
}

/// The members of a validated object, in order. See [`Raw::members`].
pub struct Members<'a> {
    text: &'a str,
    i: usize,
    done: bool,
}

impl<'a> Iterator for Members<'a> {
    type Item = (Cow<'a, str>, Raw<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let b = self.text.as_bytes();
        self.i = skip_ws(b, self.i);
        if b.get(self.i) != Some(&b'"') {
            // `}`: the end (or, in text that was never validated, garbage).
            self.done = true;
            return None;
        }
        let key_start = self.i;
        let escaped;
        (self.i, escaped) = skip_string(b, self.i);
        let contents = self
            .text
            .get(key_start + 1..self.i.saturating_sub(1))
            .unwrap_or_default();
        let key = if escaped {
            decode(contents).map_or(Cow::Borrowed(""), Cow::Owned)
        } else {
            Cow::Borrowed(contents)
        };
        self.i = skip_ws(b, self.i) + 1; // the `:`
        self.i = skip_ws(b, self.i);
        let value_start = self.i;
        self.i = skip_value(b, self.i);
        let value = Raw(&self.text[value_start..self.i]);
        self.i = skip_ws(b, self.i);
        if b.get(self.i) == Some(&b',') {
            self.i += 1;
        } else {
            self.done = true;
        }
        Some((key, value))
    }
}

/// Validates `text` as one JSON value of any kind, in UTF-8.
pub fn validate(text: &[u8], check: Check) -> Result<(), Error> {
    scan(text, check, |p| p.document(None, |_, _, _, _| Ok(())))
}

/// Where a member handed out by [`object`] sits: at the top level, or in
/// the object that is the value of the top-level member named `inner`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Top,
    Inner,
}

/// Validates `text` as one JSON object in UTF-8 and calls `member` with
/// each of its members, key decoded, in order, and with each member of the
/// object under its member named `inner` (so that `params.name` costs no
/// second walk). An inner member comes before the top-level member holding
/// it, which comes once its value has ended. `member` may refuse one with
/// a message ([`ErrorKind::Member`]); the document is refused then.
pub fn object<'a>(
    text: &'a [u8],
    check: Check,
    inner: &str,
    mut member: impl FnMut(Place, &str, Raw<'a>) -> Result<(), String>,
) -> Result<(), Error> {
    scan(text, check, |p| {
        if text.get(skip_ws(text, 0)) != Some(&b'{') {
            p.document(None, |_, _, _, _| Ok(()))?;
            return Err(p.error_at(ErrorKind::NotObject, 0, "not a JSON object"));
        }
        // The scan calls back only with what it has passed: a key, and a
        // value that has ended.
        p.document(Some(inner), |place, key, start, end| {
            member(place, &key.decoded(text), Raw(checked(&text[start..end])))
        })
    })
}

/// Text the scan has passed, as the `str` it is. Every caller hands in a
/// stretch of a document that [`Parser`] has read to its end (a string's
/// contents, a whole value, a number) and so found valid: outside strings
/// the grammar let only ASCII by, and inside them every byte above 0x7f
/// lies in a stretch std found to be UTF-8 ([`Parser::utf8`]). A stretch
/// handed in here starts and ends at an ASCII byte or an end of the
/// document, never inside a character, so it is UTF-8 too. Debug builds,
/// which the tests and the fuzzing run, check it again.
#[inline(always)]
fn checked(passed: &[u8]) -> &str {
    debug_assert!(std::str::from_utf8(passed).is_ok(), "{passed:?}");
    // SAFETY: the bytes are UTF-8, as said above.
    unsafe { std::str::from_utf8_unchecked(passed) }
}

/// Where a string's contents are in the text, and whether they hold an
/// escape (then they must be decoded to be compared).
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    escaped: bool,
}

impl Span {
    fn decoded(self, text: &[u8]) -> Cow<'_, str> {
        // A span comes only from a string the scan has read.
        let contents = checked(&text[self.start..self.end]);
        if !self.escaped {
            return Cow::Borrowed(contents);
        }
        // A lone surrogate (only [`Check::Syntax`] lets one by) has no
        // `str`: the raw contents, backslash and all, stand in. They equal
        // no name written without escapes.
        decode(contents).map_or(Cow::Borrowed(contents), Cow::Owned)
    }

    /// Whether the string's value is `name`.
    #[inline(always)]
    fn is(self, name: &str, text: &[u8]) -> bool {
        if self.escaped {
            return self.decoded(text) == name;
        }
        self.end - self.start == name.len() && text[self.start..self.end] == *name.as_bytes()
    }

    fn same_key(self, other: Span, text: &[u8]) -> bool {
        if !self.escaped && !other.escaped {
            return text[self.start..self.end] == text[other.start..other.end];
        }
        self.decoded(text) == other.decoded(text)
    }
}

/// An object key kept to find duplicates, with a fingerprint that tells
/// most pairs of different keys apart in one comparison.
#[derive(Clone, Copy)]
struct Key {
    span: Span,
    /// The length and first eight bytes of an unescaped key; equal keys
    /// have equal fingerprints. Escaped keys are always compared in full.
    fingerprint: u64,
}

impl Key {
    fn new(span: Span, b: &[u8]) -> Key {
        let len = span.end - span.start;
        let word = match b.get(span.start..span.start + 8) {
            Some(word) => {
                let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
                if len >= 8 {
                    word
                } else {
                    word & ((1 << (len * 8)) - 1)
                }
            }
            None => b[span.start..span.end]
                .iter()
                .take(8)
                .rev()
                .fold(0, |word, &c| word << 8 | u64::from(c)),
        };
        Key {
            span,
            fingerprint: word ^ (len as u64).rotate_right(8),
        }
    }

    #[inline(always)]
    fn same(self, other: Key, text: &[u8]) -> bool {
        (self.fingerprint == other.fingerprint || self.span.escaped || other.span.escaped)
            && self.span.same_key(other.span, text)
    }
}

/// The buffers of a scan, kept between scans on the same thread so that a
/// line costs no allocation.
#[derive(Default)]
struct Scratch {
    /// The containers open around the scan (innermost last): whether each
    /// is an object, and where its keys start in `keys`.
    open: Vec<(bool, usize)>,
    /// Under [`Check::Strict`], the keys of the open objects, outermost
    /// first, to find duplicates when an object closes.
    keys: Vec<Key>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Runs `scan` on a parser of `text` that uses this thread's scratch
/// buffers, borrowed in place (or fresh ones, should a scan ever start
/// inside another).
fn scan<R>(text: &[u8], check: Check, scan: impl FnOnce(&mut Parser<'_, '_>) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => {
            // Cleared first: a scan that panicked left its entries.
            scratch.open.clear();
            scratch.keys.clear();
            let result = scan(&mut Parser::new(text, check, &mut scratch));
            // A huge document's buffers are not kept.
            if scratch.open.capacity() > 1024 || scratch.keys.capacity() > 1024 {
                *scratch = Scratch::default();
            }
            result
        }
        Err(_) => scan(&mut Parser::new(text, check, &mut Scratch::default())),
    })
}

/// The state of one scan. Positions are passed along as `i` and returned
/// past what was read, so that the scan keeps them in registers.
struct Parser<'a, 's> {
    b: &'a [u8],
    strict: bool,
    scratch: &'s mut Scratch,
    /// How far the document is known to be UTF-8 (see [`Parser::utf8`]).
    utf8_to: Cell<usize>,
}

impl<'a, 's> Parser<'a, 's> {
    fn new(text: &'a [u8], check: Check, scratch: &'s mut Scratch) -> Parser<'a, 's> {
        Parser {
            b: text,
            strict: check == Check::Strict,
            scratch,
            utf8_to: Cell::new(0),
        }
    }

    #[cold]
    fn error_at(&self, kind: ErrorKind, at: usize, message: impl Into<String>) -> Error {
        let mut message = message.into();
        if at >= self.b.len() && kind == ErrorKind::Syntax {
            message = format!("unexpected end: {message}");
        }
        Error(Box::new(Inner { kind, at, message }))
    }

    #[cold]
    fn syntax(&self, at: usize, message: &str) -> Error {
        self.error_at(ErrorKind::Syntax, at, message)
    }

    /// One whole document: a value, whitespace around it. If the value is
    /// an object, `member` is called with each of its members (the key,
    /// where the value starts and where it ends) as soon as the value is
    /// read, and so with each member of the object under its member named
    /// `inner`. Iterative, in one loop: a deep document costs heap, not
    /// stack, and the hot state stays in registers.
    fn document(
        &mut self,
        inner: Option<&str>,
        mut member: impl FnMut(Place, Span, usize, usize) -> Result<(), String>,
    ) -> Result<(), Error> {
        let b = self.b;
        let mut i = skip_ws(b, 0);
        // The key of the top-level member being read, and where its value
        // starts; the same for a member of `inner`, and whether the
        // top-level member being read is `inner`.
        let mut top: Option<(Span, usize)> = None;
        let mut nested: Option<(Span, usize)> = None;
        let mut in_inner = false;
        loop {
            // A value starts at `i`.
            match b.get(i) {
                Some(b'"') => i = self.string(i)?.end + 1,
                Some(&c @ (b'{' | b'[')) => {
                    let object = c == b'{';
                    let max_depth = if self.strict {
                        MAX_DEPTH
                    } else {
                        SYNTAX_MAX_DEPTH
                    };
                    if self.scratch.open.len() >= max_depth {
                        return Err(self.error_at(
                            ErrorKind::Strict,
                            i,
                            format!("nested more than {max_depth} levels deep"),
                        ));
                    }
                    let keys = self.scratch.keys.len();
                    self.scratch.open.push((object, keys));
                    i = skip_ws(b, i + 1);
                    match b.get(i) {
                        Some(b'}') if object => {}
                        Some(b']') if !object => {}
                        _ if object => {
                            i = self.member_key(i, &mut top, &mut nested, inner, &mut in_inner)?;
                            continue;
                        }
                        _ => continue,
                    }
                    // Empty.
                    i += 1;
                    self.scratch.open.pop();
                }
                Some(b'-' | b'0'..=b'9') => i = self.number(i)?,
                Some(b't') => i = self.literal(i, "true")?,
                Some(b'f') => i = self.literal(i, "false")?,
                Some(b'n') => i = self.literal(i, "null")?,
                _ => return Err(self.syntax(i, "expected a value")),
            }
            // A value ended at `i`: close what it ends, or go on to the next.
            loop {
                let Some(&(object, keys_from)) = self.scratch.open.last() else {
                    return self.end(i);
                };
                let done = match self.scratch.open.len() {
                    1 => top.take().map(|done| (Place::Top, done)),
                    2 => nested.take().map(|done| (Place::Inner, done)),
                    _ => None,
                };
                if let Some((place, (key, start))) = done {
                    member(place, key, start, i)
                        .map_err(|m| self.error_at(ErrorKind::Member, start, m))?;
                }
                i = skip_ws(b, i);
                match (b.get(i), object) {
                    (Some(b','), true) => {
                        i = skip_ws(b, i + 1);
                        i = self.member_key(i, &mut top, &mut nested, inner, &mut in_inner)?;
                        break;
                    }
                    (Some(b','), false) => {
                        i = skip_ws(b, i + 1);
                        break;
                    }
                    (Some(b'}'), true) => {
                        self.close_object(keys_from)?;
                        self.scratch.open.pop();
                        i += 1;
                    }
                    (Some(b']'), false) => {
                        self.scratch.open.pop();
                        i += 1;
                    }
                    (_, true) => return Err(self.syntax(i, "expected `,` or `}`")),
                    (_, false) => return Err(self.syntax(i, "expected `,` or `]`")),
                }
            }
        }
    }

    /// Only whitespace may follow the document.
    fn end(&self, i: usize) -> Result<(), Error> {
        let i = skip_ws(self.b, i);
        if i < self.b.len() {
            return Err(self.syntax(i, "trailing characters"));
        }
        Ok(())
    }

    /// A key and its `:` inside an object, from `i` (whitespace skipped);
    /// returns where its value starts. A key of the top-level object goes
    /// to `top` (and says whether it is `inner`), one of the object under
    /// `inner` to `nested`.
    #[inline(always)]
    fn member_key(
        &mut self,
        i: usize,
        top: &mut Option<(Span, usize)>,
        nested: &mut Option<(Span, usize)>,
        inner: Option<&str>,
        in_inner: &mut bool,
    ) -> Result<usize, Error> {
        if self.b.get(i) != Some(&b'"') {
            return Err(self.syntax(i, "expected a string key"));
        }
        let key = self.string(i)?;
        let i = skip_ws(self.b, key.end + 1);
        if self.b.get(i) != Some(&b':') {
            return Err(self.syntax(i, "expected `:`"));
        }
        let i = skip_ws(self.b, i + 1);
        if self.strict {
            if self.scratch.keys.len() >= MAX_OPEN_KEYS {
                return Err(self.error_at(
                    ErrorKind::Strict,
                    key.start - 1,
                    format!("more than {MAX_OPEN_KEYS} keys in the objects open here"),
                ));
            }
            self.scratch.keys.push(Key::new(key, self.b));
        }
        match self.scratch.open.len() {
            1 => {
                *top = Some((key, i));
                *in_inner = inner.is_some_and(|inner| key.is(inner, self.b));
            }
            2 if *in_inner => *nested = Some((key, i)),
            _ => {}
        }
        Ok(i)
    }

    /// Under [`Check::Strict`], refuses a repeated key among `keys[from..]`
    /// (the object that is closing), then forgets them.
    #[inline(always)]
    fn close_object(&mut self, from: usize) -> Result<(), Error> {
        if !self.strict {
            return Ok(());
        }
        let text = self.b;
        let keys = &self.scratch.keys[from..];
        // The second of a repeated pair, to point at it.
        let repeated = if keys.len() <= 16 {
            (1..keys.len())
                .find(|&j| keys[..j].iter().any(|k| k.same(keys[j], text)))
                .map(|j| keys[j].span)
        } else {
            self.repeated_among_many(from)
        };
        if let Some(key) = repeated {
            return Err(self.error_at(
                ErrorKind::Duplicate,
                key.start - 1,
                format!("duplicate key {:?}", key.decoded(text)),
            ));
        }
        self.scratch.keys.truncate(from);
        Ok(())
    }

    /// [`Parser::close_object`] for an object with many keys: sorted, so
    /// that it stays n log n.
    #[inline(never)]
    fn repeated_among_many(&mut self, from: usize) -> Option<Span> {
        let text = self.b;
        let keys = &mut self.scratch.keys[from..];
        keys.sort_unstable_by(|a, b| a.span.decoded(text).cmp(&b.span.decoded(text)));
        keys.windows(2)
            .find(|w| w[0].same(w[1], text))
            .map(|w| w[1].span)
    }

    #[inline(always)]
    fn literal(&self, i: usize, word: &str) -> Result<usize, Error> {
        if self.b[i..].starts_with(word.as_bytes()) {
            Ok(i + word.len())
        } else {
            Err(self.syntax(i, &format!("expected `{word}`")))
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    #[inline(always)]
    fn number(&self, start: usize) -> Result<usize, Error> {
        let b = self.b;
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(b, i + 1),
            _ => return Err(self.syntax(i, "invalid number")),
        }
        let integer_digits = i - start;
        let mut plain = true;
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !matches!(b.get(i), Some(b'0'..=b'9')) {
                return Err(self.syntax(i, "invalid number"));
            }
            i = digits(b, i);
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            plain = false;
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !matches!(b.get(i), Some(b'0'..=b'9')) {
                return Err(self.syntax(i, "invalid number"));
            }
            i = digits(b, i);
        }
        // Only an exponent or 300-odd digits reach past f64: check those.
        if self.strict && (!plain || integer_digits > 300) {
            let finite = checked(&b[start..i])
                .parse::<f64>()
                .is_ok_and(f64::is_finite);
            if !finite {
                return Err(self.error_at(ErrorKind::Strict, start, "number out of range"));
            }
        }
        Ok(i)
    }

    /// The string whose opening quote is at `i`. Most strings have no
    /// escape and are ASCII: they take the fast path.
    #[inline(always)]
    fn string(&self, i: usize) -> Result<Span, Error> {
        let start = i + 1;
        let end = skip_plain(self.b, start);
        if self.b.get(end) == Some(&b'"') {
            return Ok(Span {
                start,
                end,
                escaped: false,
            });
        }
        self.string_rest(start, end)
    }

    /// The rest of a string that holds an escape or a character beyond
    /// ASCII (or is broken), from `i`.
    #[inline(never)]
    fn string_rest(&self, start: usize, mut i: usize) -> Result<Span, Error> {
        let mut escaped = false;
        loop {
            match self.b.get(i) {
                Some(b'"') => {
                    return Ok(Span {
                        start,
                        end: i,
                        escaped,
                    });
                }
                Some(b'\\') => {
                    i = self.escape(i)?;
                    escaped = true;
                    i = skip_plain(self.b, i);
                }
                // `utf8` stops where `skip_plain` would.
                Some(0x80..) => i = self.utf8(i)?,
                Some(_) => return Err(self.syntax(i, "control character in a string")),
                None => return Err(self.syntax(i, "unterminated string")),
            }
        }
    }

    /// Checks the UTF-8 in a string from `i`, where a byte above 0x7f is,
    /// up to the next quote, backslash or control byte (which no
    /// character's bytes include); returns where that is.
    ///
    /// The first time, std checks the rest of the document in one go: a
    /// valid document is UTF-8 throughout, std's check is quick over ASCII,
    /// and so later strings beyond ASCII cost only the search for their
    /// end. Where std found the rest invalid, a string that reaches that
    /// far is refused; bytes above 0x7f outside strings the grammar
    /// refuses anyway. `i` follows an ASCII byte, so it starts a character.
    #[cold]
    fn utf8(&self, i: usize) -> Result<usize, Error> {
        if i >= self.utf8_to.get() {
            let rest = &self.b[i..];
            let valid = std::str::from_utf8(rest).map_or_else(|e| e.valid_up_to(), str::len);
            self.utf8_to.set(i + valid);
        }
        let end = skip_plain_ascii(self.b, i);
        let utf8_to = self.utf8_to.get();
        if end > utf8_to {
            return Err(self.syntax(utf8_to, "invalid UTF-8 in a string"));
        }
        Ok(end)
    }

    /// Checks one escape, from its backslash; returns the position past it.
    /// Surrogates must pair under [`Check::Strict`]; serde_json's skipping,
    /// like JavaScript's `JSON.stringify`, lets a lone one by.
    fn escape(&self, at: usize) -> Result<usize, Error> {
        let b = self.b;
        match b.get(at + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(at + 2),
            Some(b'u') => {
                let i = at + 2;
                let Some(unit) = b.get(i..i + 4).and_then(hex4) else {
                    return Err(self.syntax(i, "invalid \\u escape"));
                };
                let mut i = i + 4;
                let lone = match unit {
                    0xD800..=0xDBFF => {
                        let low = b[i..]
                            .strip_prefix(b"\\u")
                            .and_then(|rest| hex4(rest.get(..4)?));
                        if let Some(0xDC00..=0xDFFF) = low {
                            i += 6;
                            false
                        } else {
                            true
                        }
                    }
                    0xDC00..=0xDFFF => true,
                    _ => false,
                };
                if lone && self.strict {
                    return Err(self.error_at(
                        ErrorKind::Strict,
                        at,
                        "lone surrogate in a \\u escape",
                    ));
                }
                Ok(i)
            }
            _ => Err(self.syntax(at, "invalid escape")),
        }
    }
}

#[inline(always)]
fn digits(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b'0'..=b'9')) {
        i += 1;
    }
    i
}

/// The value of a string's contents (between the quotes, already checked),
/// escapes decoded; `None` if it holds a lone surrogate.
/// How many bytes the UTF-8 character starting with `first` takes.
fn utf8_len(first: u8) -> usize {
    match first {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

fn decode(contents: &str) -> Option<String> {
    let mut out = String::with_capacity(contents.len());
    let mut rest = contents;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let b = rest.as_bytes();
        let (c, used) = match b.get(at + 1)? {
            b'"' => ('"', 2),
            b'\\' => ('\\', 2),
            b'/' => ('/', 2),
            b'b' => ('\u{8}', 2),
            b'f' => ('\u{c}', 2),
            b'n' => ('\n', 2),
            b'r' => ('\r', 2),
            b't' => ('\t', 2),
            b'u' => {
                let unit = u32::from(hex4(b.get(at + 2..at + 6)?)?);
                match unit {
                    0xD800..=0xDBFF => {
                        let low = b
                            .get(at + 6..at + 12)
                            .filter(|l| l.starts_with(b"\\u"))
                            .and_then(|l| hex4(&l[2..]))
                            .map(u32::from)
                            .filter(|l| (0xDC00..=0xDFFF).contains(l))?;
                        (
                            char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))?,
                            12,
                        )
                    }
                    _ => (char::from_u32(unit)?, 6),
                }
            }
            _ => return None,
        };
        out.push(c);
        rest = &rest[at + used..];
    }
    out.push_str(rest);
    Some(out)
}

fn hex4(digits: &[u8]) -> Option<u16> {
    digits.iter().try_fold(0u16, |n, &d| {
        let v = (d as char).to_digit(16)?;
        Some(n << 4 | v as u16)
    })
}

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The first index from `i` holding `"`, `\`, a control character or a
/// byte above 0x7f (one of a character beyond ASCII), or the end. Eight
/// bytes at a time: string contents are most of a message. A string still
/// going after [`LONG`] bytes is a long one (an embedded file, a large
/// result): its rest is looked at a block at a time.
#[inline]
fn skip_plain(b: &[u8], mut i: usize) -> usize {
    let long_from = i + LONG;
    while let Some(chunk) = b.get(i..i + 8) {
        let found = special_bytes(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
        if i >= long_from {
            return skip_plain_long(b, i);
        }
    }
    skip_bytes(b, i, plain)
}

/// After this many plain bytes a string is taken for a long one.
const LONG: usize = 256;
/// Bytes looked at per step in a long string.
const BLOCK: usize = 32;

/// [`skip_plain`] in a long string: past the blocks of [`BLOCK`] bytes that
/// hold no special byte, then a word at a time to find the one that does.
/// No branch inside a block, so the compiler makes it vector compares.
#[inline(never)]
fn skip_plain_long(b: &[u8], i: usize) -> usize {
    // Read as signed, a byte above 0x7f is negative: one comparison finds
    // it and a control character.
    let i = skip_blocks(b, i, |c| (c == b'"') | (c == b'\\') | ((c as i8) < 0x20));
    skip_plain_words(b, i)
}

/// Past the blocks of [`BLOCK`] bytes from `i` that hold no byte `special`
/// says is one: the first block that does holds it somewhere.
#[inline(always)]
fn skip_blocks(b: &[u8], mut i: usize, special: impl Fn(u8) -> bool) -> usize {
    while let Some(block) = b.get(i..i + BLOCK) {
        if block.iter().fold(false, |any, &c| any | special(c)) {
            break;
        }
        i += BLOCK;
    }
    i
}

/// [`skip_plain`]'s loop without the switch to blocks (kept apart there:
/// the short strings' loop is the hottest in the parse).
#[inline(always)]
fn skip_plain_words(b: &[u8], i: usize) -> usize {
    skip_words(b, i, special_bytes, plain)
}

/// Like [`skip_plain`], but past bytes above 0x7f: the end of a stretch
/// of text whose UTF-8 is to be checked. Text in another script can run
/// long: blocks first.
fn skip_plain_ascii(b: &[u8], i: usize) -> usize {
    let i = skip_blocks(b, i, |c| (c == b'"') | (c == b'\\') | (c < 0x20));
    skip_words(b, i, special_ascii, |c| {
        c != b'"' && c != b'\\' && c >= 0x20
    })
}

/// Past the bytes from `i` that are not special: eight at a time, where
/// `special` flags them in a word as [`special_bytes`] does, then one at
/// a time, where `plain` says which are not.
#[inline(always)]
fn skip_words(
    b: &[u8],
    mut i: usize,
    special: impl Fn(u64) -> u64,
    plain: impl Fn(u8) -> bool,
) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let found = special(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    skip_bytes(b, i, plain)
}

/// Past the bytes from `i` that `plain` passes, one at a time: the tail of
/// a string shorter than a word.
#[inline(always)]
fn skip_bytes(b: &[u8], mut i: usize, plain: impl Fn(u8) -> bool) -> usize {
    while matches!(b.get(i), Some(&c) if plain(c)) {
        i += 1;
    }
    i
}

/// A byte [`skip_plain`] passes: printable ASCII but a quote or backslash.
#[inline(always)]
fn plain(c: u8) -> bool {
    c != b'"' && c != b'\\' && (0x20..0x80).contains(&c)
}

/// The high bit set in each byte of `w` that is `"`, `\`, below 0x20 or
/// above 0x7f (and perhaps in bytes above the lowest such one: only the
/// lowest is always a true one).
#[inline(always)]
fn special_bytes(w: u64) -> u64 {
    special_ascii(w) | (w & HIGH)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// [`special_bytes`] without the bytes above 0x7f.
#[inline(always)]
fn special_ascii(w: u64) -> u64 {
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    // Each term flags a byte that is zero (or, for `w`, below 0x20).
    let found = (quote.wrapping_sub(ONES) & !quote)
        | (backslash.wrapping_sub(ONES) & !backslash)
        | (w.wrapping_sub(ONES * 0x20) & !w);
    found & HIGH
}

/// Past the string starting at `i`, in validated text (where what stops
/// [`skip_plain`] is a quote, a backslash or a character beyond ASCII),
/// and whether it holds an escape.
fn skip_string(b: &[u8], i: usize) -> (usize, bool) {
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        // Most strings are short: the first bytes are looked at eight at a
        // time, and memchr, which costs more to set up, takes a long rest.
        let near = b.len().min(j + 64);
        let mut k = skip_plain(&b[..near], j);
        if k == near && near < b.len() {
            k = memchr::memchr2(b'"', b'\\', &b[near..]).map_or(b.len(), |n| near + n);
        }
        match b.get(k) {
            Some(b'"') => return (k + 1, escaped),
            // A backslash and the character it escapes.
            Some(b'\\') => {
                j = k + 2;
                escaped = true;
            }
            Some(_) => j = k + 1,
            None => return (b.len(), escaped),
        }
    }
}

/// Past the value starting at `i`, in validated text.
fn skip_value(b: &[u8], i: usize) -> usize {
    match b.get(i) {
        Some(b'"') => skip_string(b, i).0,
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            while let Some(&c) = b.get(j) {
                match c {
                    b'"' => {
                        j = skip_string(b, j).0;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            j
        }
        // A number or a literal runs to the next delimiter.
        _ => {
            let mut j = i;
            while matches!(b.get(j), Some(c) if !matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
            {
                j += 1;
            }
            j
        }
    }
}

#[cfg(test)]
mod tests;

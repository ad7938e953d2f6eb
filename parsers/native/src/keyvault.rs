//! Fast path for the Azure Key Vault parser (reference: parsers/azure_keyvault.py).
//!
//! Entry points (registered by `register`):
//! * `keyvault_lines(buf, end, path, base, max_line)`: every NDJSON line of a chunk, framed
//!   exactly like parsers.framing.iter_lines; KeyEvents in line order, and an
//!   `(offset, line, overlong)` tuple wherever the Python parser must take the line.
//! * `keyvault_document(data, path)`: a whole-file document (`{"records":[...]}`, an array
//!   of records, or one record): a KeyEvent or None per record.
//! * `keyvault_line(line, path, offset)`: one record (tests and one-off callers).
//! * `keyvault_canon(data)`: the bytes orjson.dumps(orjson.loads(data)) would give (tests).
//!
//! Shapes handled: AuditEvent resource-log records (Key Vault and Managed HSM) and Activity
//! Log records in the diagnostic-settings export shape. Everything else (Log Analytics
//! rows, the Activity Log REST shape, access-policy writes, `Start` records, records the
//! Python parser skips or quarantines, ...) returns None / a fallback tuple.
//!
//! A record is read by a small JSON scanner that builds a tape of nodes and decides
//! whether the line is already the exact bytes `orjson.dumps(orjson.loads(line))` gives
//! (event.id hashes them); if not (whitespace, `\/` or `\u` escapes, `-0`, float
//! spellings) a second pass writes those bytes. Anything the scanner or the mapping is not
//! sure about (duplicate or escaped keys, floats outside the plain range, integers beyond
//! 18 digits, non-ASCII names, URIs and ids, odd timestamps, IPv6, ...) falls back.
//! Event ids of a batch are hashed together (BLAKE2b-128, blake2b_simd `hash_many`).

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::ffi;
use pyo3::sync::PyOnceLock;
use crate::common::GilProtected;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::common::{clean_ip, normalize_iso, stable_id, Fallback, Fb, CTX};

const DATASET: &str = "azure.keyvault";
const PROVIDER_KV: &str = "azure_keyvault";
const PROVIDER_HSM: &str = "azure_managed_hsm";
const NONE: u32 = u32::MAX;
const MAX_DEPTH: u32 = 64;

// =============================================================================== JSON tape

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum K {
    Obj,
    Arr,
    Str,
    Int,
    Float,
    True,
    False,
    Null,
}

#[derive(Clone, Copy, Debug)]
struct Node {
    k: K,
    esc: bool, // string value with escapes
    a: u32,    // value bytes: strings without quotes, numbers the token, containers whole
    b: u32,
    ka: u32, // member key bytes (no escapes)
    kb: u32,
    next: u32, // next sibling
    n: u32,    // children of a container
}

struct Tape<'a> {
    s: &'a [u8],
    nodes: Vec<Node>,
}

struct Scanner<'a, const CANON: bool> {
    s: &'a [u8],
    pos: usize,
    nodes: Vec<Node>,
    out: Vec<u8>,
    keys: Vec<(u64, u32, u32)>,
    dirty: bool, // the input differs from orjson's compact form
}

/// Bytes that end the plain run of a JSON string: quote, backslash, control characters.
static SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 32 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    let mut j = 128;
    while j < 256 {
        t[j] = true;
        j += 1;
    }
    t
};

/// Index of the first quote, backslash, control or non-ASCII byte at or after `i` (or s.len()).
#[inline]
fn find_special(s: &[u8], mut i: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    while i + 8 <= s.len() {
        let w = u64::from_le_bytes(s[i..i + 8].try_into().unwrap());
        let q = w ^ (0x22 * LO);
        let b = w ^ (0x5c * LO);
        let m = (q.wrapping_sub(LO) & !q & HI)
            | (b.wrapping_sub(LO) & !b & HI)
            | (w.wrapping_sub(0x20 * LO) & !w & HI)
            | (w & HI);
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < s.len() && !SPECIAL[s[i] as usize] {
        i += 1;
    }
    i
}

/// Cheap fingerprint of a key for duplicate detection (length + first 7 bytes).
#[inline]
fn key_fp(k: &[u8]) -> u64 {
    let n = k.len();
    if n >= 8 {
        return load8(k, 0) ^ load8(k, n - 8).rotate_left(32) ^ ((n as u64) << 56);
    }
    let mut v = (n as u64) << 56;
    for (i, &c) in k.iter().enumerate() {
        v |= (c as u64) << (8 * i);
    }
    v
}

#[inline]
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

fn hex4(b: &[u8]) -> Fb<u32> {
    if b.len() < 4 {
        return Err(Fallback);
    }
    let mut v = 0u32;
    for &c in &b[..4] {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return Err(Fallback),
        };
        v = v * 16 + d as u32;
    }
    Ok(v)
}

/// Decode the escapes of a JSON string body (validated by the scanner).
fn unescape(raw: &[u8], out: &mut String) -> Fb<()> {
    let mut i = 0;
    let n = raw.len();
    while i < n {
        let start = i;
        while i < n && raw[i] != b'\\' {
            i += 1;
        }
        out.push_str(std::str::from_utf8(&raw[start..i]).map_err(|_| Fallback)?);
        if i >= n {
            break;
        }
        let e = *raw.get(i + 1).ok_or(Fallback)?;
        i += 2;
        let ch = match e {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = hex4(&raw[i..])?;
                i += 4;
                let cp = if (0xD800..0xDC00).contains(&hi) {
                    if raw.get(i) != Some(&b'\\') || raw.get(i + 1) != Some(&b'u') {
                        return Err(Fallback);
                    }
                    let lo = hex4(&raw[i + 2..])?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err(Fallback);
                    }
                    i += 6;
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else if (0xDC00..0xE000).contains(&hi) {
                    return Err(Fallback);
                } else {
                    hi
                };
                char::from_u32(cp).ok_or(Fallback)?
            }
            _ => return Err(Fallback),
        };
        out.push(ch);
    }
    Ok(())
}

/// orjson's encoding of one decoded character inside a string.
fn canon_char(ch: char, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match ch {
        '"' => out.extend_from_slice(b"\\\""),
        '\\' => out.extend_from_slice(b"\\\\"),
        '\u{8}' => out.extend_from_slice(b"\\b"),
        '\t' => out.extend_from_slice(b"\\t"),
        '\n' => out.extend_from_slice(b"\\n"),
        '\u{c}' => out.extend_from_slice(b"\\f"),
        '\r' => out.extend_from_slice(b"\\r"),
        c if (c as u32) < 0x20 => {
            let v = c as u32 as usize;
            out.extend_from_slice(b"\\u00");
            out.push(HEX[v >> 4]);
            out.push(HEX[v & 15]);
        }
        c => {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
}

/// CANON: also write orjson's compact form of the text to `out`.
impl<'a, const CANON: bool> Scanner<'a, CANON> {
    fn new(s: &'a [u8]) -> Self {
        let (mut nodes, mut keys) = POOL.with(|p| p.take());
        nodes.clear();
        keys.clear();
        Scanner {
            s,
            pos: 0,
            nodes,
            out: if CANON { Vec::with_capacity(s.len()) } else { Vec::new() },
            keys,
            dirty: false,
        }
    }

    #[inline(always)]
    fn ws(&mut self) {
        if self.pos < self.s.len() && is_ws(self.s[self.pos]) {
            self.dirty = true;
            while self.pos < self.s.len() && is_ws(self.s[self.pos]) {
                self.pos += 1;
            }
        }
    }

    #[inline]
    fn peek(&self) -> Fb<u8> {
        self.s.get(self.pos).copied().ok_or(Fallback)
    }

    #[inline]
    fn emit(&mut self, b: u8) {
        if CANON {
            self.out.push(b);
        }
    }

    /// A string starting at the opening quote: (body start, body end, has escapes).
    fn string(&mut self) -> Fb<(u32, u32, bool)> {
        let s = self.s;
        let n = s.len();
        let start = self.pos + 1;
        let mut i = start;
        let mut esc = false;
        let mut uesc = false; // \u or \/ escapes: decoded and re-encoded by orjson
        let mut utf8 = false; // non-ASCII bytes: validated below
        loop {
            i = find_special(s, i);
            if i >= n {
                return Err(Fallback);
            }
            match s[i] {
                b'"' => break,
                0x80..=0xff => {
                    utf8 = true;
                    i += 1;
                }
                b'\\' => {
                    esc = true;
                    let e = *s.get(i + 1).ok_or(Fallback)?;
                    i = match e {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => i + 2,
                        b'/' => {
                            uesc = true;
                            i + 2
                        }
                        b'u' => {
                            hex4(s.get(i + 2..).ok_or(Fallback)?)?;
                            uesc = true;
                            i + 6
                        }
                        _ => return Err(Fallback),
                    };
                }
                _ => return Err(Fallback), // raw control character
            }
        }
        let end = i;
        self.pos = end + 1;
        if utf8 {
            std::str::from_utf8(&s[start..end]).map_err(|_| Fallback)?;
        }
        if uesc {
            self.dirty = true;
        }
        if CANON {
            self.out.push(b'"');
            if esc {
                let mut dec = String::with_capacity(end - start);
                unescape(&s[start..end], &mut dec)?;
                for ch in dec.chars() {
                    canon_char(ch, &mut self.out);
                }
            } else {
                self.out.extend_from_slice(&s[start..end]);
            }
            self.out.push(b'"');
        } else if uesc {
            let mut dec = String::new();
            unescape(&s[start..end], &mut dec)?; // surrogates as orjson checks them
        }
        Ok((start as u32, end as u32, esc))
    }

    fn number(&mut self) -> Fb<(K, u32, u32)> {
        let s = self.s;
        let start = self.pos;
        let mut i = start;
        if s.get(i) == Some(&b'-') {
            i += 1;
        }
        let int_start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        let int_len = i - int_start;
        if int_len == 0 || (int_len > 1 && s[int_start] == b'0') {
            return Err(Fallback);
        }
        let mut float = false;
        if s.get(i) == Some(&b'.') {
            float = true;
            i += 1;
            let f0 = i;
            while i < s.len() && s[i].is_ascii_digit() {
                i += 1;
            }
            if i == f0 {
                return Err(Fallback);
            }
        }
        if matches!(s.get(i), Some(b'e') | Some(b'E')) {
            float = true;
            i += 1;
            if matches!(s.get(i), Some(b'+') | Some(b'-')) {
                i += 1;
            }
            let e0 = i;
            while i < s.len() && s[i].is_ascii_digit() {
                i += 1;
            }
            if i == e0 {
                return Err(Fallback);
            }
        }
        self.pos = i;
        let tok = &s[start..i];
        if !float {
            if int_len > 18 {
                return Err(Fallback); // orjson turns big integers into floats
            }
            if tok == b"-0" {
                self.dirty = true;
            }
            if CANON {
                if tok == b"-0" {
                    self.out.push(b'0');
                } else {
                    self.out.extend_from_slice(tok);
                }
            }
            return Ok((K::Int, start as u32, i as u32));
        }
        let x: f64 = std::str::from_utf8(tok)
            .map_err(|_| Fallback)?
            .parse()
            .map_err(|_| Fallback)?;
        if !x.is_finite() {
            return Err(Fallback);
        }
        let txt = float_repr(x)?;
        if txt.as_bytes() != tok {
            self.dirty = true;
        }
        if CANON {
            self.out.extend_from_slice(txt.as_bytes());
        }
        Ok((K::Float, start as u32, i as u32))
    }

    fn lit(&mut self, word: &[u8]) -> Fb<()> {
        if self.s.get(self.pos..self.pos + word.len()) != Some(word) {
            return Err(Fallback);
        }
        self.pos += word.len();
        if CANON {
            self.out.extend_from_slice(word);
        }
        Ok(())
    }

    fn push(&mut self, k: K, a: u32, b: u32, ka: u32, kb: u32, esc: bool) -> u32 {
        let idx = self.nodes.len() as u32;
        self.nodes.push(Node { k, esc, a, b, ka, kb, next: NONE, n: 0 });
        idx
    }

    fn value(&mut self, depth: u32, ka: u32, kb: u32) -> Fb<u32> {
        if depth > MAX_DEPTH {
            return Err(Fallback);
        }
        self.ws();
        let c = self.peek()?;
        match c {
            b'{' => {
                let idx = self.push(K::Obj, self.pos as u32, 0, ka, kb, false);
                self.pos += 1;
                self.emit(b'{');
                self.ws();
                if self.peek()? == b'}' {
                    self.pos += 1;
                    self.emit(b'}');
                    self.nodes[idx as usize].b = self.pos as u32;
                    return Ok(idx);
                }
                let kbase = self.keys.len();
                let mut prev = NONE;
                let mut n = 0u32;
                loop {
                    self.ws();
                    if self.peek()? != b'"' {
                        return Err(Fallback);
                    }
                    let (a, b, esc) = self.string()?;
                    if esc {
                        return Err(Fallback); // escaped keys: Python decides
                    }
                    let key = &self.s[a as usize..b as usize];
                    let fp = key_fp(key);
                    for &(f, x, y) in &self.keys[kbase..] {
                        if f == fp && &self.s[x as usize..y as usize] == key {
                            return Err(Fallback); // duplicate key: orjson keeps the last value
                        }
                    }
                    self.keys.push((fp, a, b));
                    self.ws();
                    if self.peek()? != b':' {
                        return Err(Fallback);
                    }
                    self.pos += 1;
                    self.emit(b':');
                    let child = self.value(depth + 1, a, b)?;
                    if prev != NONE {
                        self.nodes[prev as usize].next = child;
                    }
                    prev = child;
                    n += 1;
                    self.ws();
                    match self.peek()? {
                        b',' => {
                            self.pos += 1;
                            self.emit(b',');
                        }
                        b'}' => {
                            self.pos += 1;
                            self.emit(b'}');
                            break;
                        }
                        _ => return Err(Fallback),
                    }
                }
                self.keys.truncate(kbase);
                self.nodes[idx as usize].n = n;
                self.nodes[idx as usize].b = self.pos as u32;
                Ok(idx)
            }
            b'[' => {
                let idx = self.push(K::Arr, self.pos as u32, 0, ka, kb, false);
                self.pos += 1;
                self.emit(b'[');
                self.ws();
                if self.peek()? == b']' {
                    self.pos += 1;
                    self.emit(b']');
                    self.nodes[idx as usize].b = self.pos as u32;
                    return Ok(idx);
                }
                let mut prev = NONE;
                let mut n = 0u32;
                loop {
                    let child = self.value(depth + 1, 0, 0)?;
                    if prev != NONE {
                        self.nodes[prev as usize].next = child;
                    }
                    prev = child;
                    n += 1;
                    self.ws();
                    match self.peek()? {
                        b',' => {
                            self.pos += 1;
                            self.emit(b',');
                        }
                        b']' => {
                            self.pos += 1;
                            self.emit(b']');
                            break;
                        }
                        _ => return Err(Fallback),
                    }
                }
                self.nodes[idx as usize].n = n;
                self.nodes[idx as usize].b = self.pos as u32;
                Ok(idx)
            }
            b'"' => {
                let (a, b, esc) = self.string()?;
                Ok(self.push(K::Str, a, b, ka, kb, esc))
            }
            b't' => {
                self.lit(b"true")?;
                Ok(self.push(K::True, 0, 0, ka, kb, false))
            }
            b'f' => {
                self.lit(b"false")?;
                Ok(self.push(K::False, 0, 0, ka, kb, false))
            }
            b'n' => {
                self.lit(b"null")?;
                Ok(self.push(K::Null, 0, 0, ka, kb, false))
            }
            b'-' | b'0'..=b'9' => {
                let (k, a, b) = self.number()?;
                Ok(self.push(k, a, b, ka, kb, false))
            }
            _ => Err(Fallback),
        }
    }

    /// Scan a whole JSON text (one value, surrounding whitespace allowed).
    fn run(mut self) -> Fb<(Tape<'a>, Vec<u8>, bool)> {
        // UTF-8: bytes >= 0x80 are only valid inside strings, which string() validates.
        self.value(0, 0, 0)?;
        self.ws();
        if self.pos != self.s.len() {
            return Err(Fallback);
        }
        let keys = std::mem::take(&mut self.keys);
        let nodes = std::mem::take(&mut self.nodes);
        let (out, dirty) = (std::mem::take(&mut self.out), self.dirty);
        POOL.with(|p| {
            let mut spare = p.take();
            spare.1 = keys;
            p.set(spare);
        });
        Ok((Tape { s: self.s, nodes }, out, dirty))
    }
}

type Spare = (Vec<Node>, Vec<(u64, u32, u32)>);

thread_local! {
    /// Spare scanner buffers (node tape, key stack), reused across records.
    static POOL: std::cell::Cell<Spare> = const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

impl Drop for Tape<'_> {
    fn drop(&mut self) {
        let nodes = std::mem::take(&mut self.nodes);
        if nodes.capacity() > 0 && nodes.capacity() <= 4096 {
            POOL.with(|p| {
                let mut spare = p.take();
                spare.0 = nodes;
                p.set(spare);
            });
        }
    }
}

/// The tape of a record and the bytes orjson.dumps would write for it.
fn scan(line: &[u8]) -> Fb<(Tape<'_>, Cow<'_, [u8]>)> {
    let (t, _, dirty) = Scanner::<false>::new(line).run()?;
    if !dirty {
        return Ok((t, Cow::Borrowed(line)));
    }
    let (_, out, _) = Scanner::<true>::new(line).run()?;
    Ok((t, Cow::Owned(out)))
}

impl<const CANON: bool> Scanner<'_, CANON> {
}

/// orjson's float text, for the range where it is plain decimal (else Fallback).
fn float_repr(x: f64) -> Fb<String> {
    if x == 0.0 {
        return Ok(if x.is_sign_negative() { "-0.0".into() } else { "0.0".into() });
    }
    let a = x.abs();
    if !(1e-4..1e16).contains(&a) {
        return Err(Fallback);
    }
    let mut t = format!("{}", x);
    if !t.contains('.') {
        t.push_str(".0");
    }
    Ok(t)
}

/// orjson.dumps(orjson.loads(data)) when this scanner is sure of it (tests use this).
#[pyfunction]
fn keyvault_canon<'py>(py: Python<'py>, data: &[u8]) -> Option<Bound<'py, PyBytes>> {
    let (_, raw) = scan(data).ok()?;
    Some(PyBytes::new(py, &raw))
}

impl<'a> Tape<'a> {
    #[inline]
    fn node(&self, i: u32) -> &Node {
        &self.nodes[i as usize]
    }

    #[inline]
    fn kind(&self, i: u32) -> K {
        self.nodes[i as usize].k
    }

    fn get(&self, obj: u32, key: &str) -> Option<u32> {
        let o = self.node(obj);
        if o.k != K::Obj || o.n == 0 {
            return None;
        }
        let key = key.as_bytes();
        let mut c = obj + 1;
        while c != NONE {
            let n = self.node(c);
            if (n.kb - n.ka) as usize == key.len() && &self.s[n.ka as usize..n.kb as usize] == key {
                return Some(c);
            }
            c = n.next;
        }
        None
    }

    fn children(&self, c: u32) -> Children<'_, 'a> {
        let n = self.node(c);
        Children { t: self, cur: if n.n == 0 { NONE } else { c + 1 } }
    }

    fn key(&self, i: u32) -> &'a str {
        let n = self.node(i);
        // Validated UTF-8 at scan time; keys never contain escapes.
        unsafe { std::str::from_utf8_unchecked(&self.s[n.ka as usize..n.kb as usize]) }
    }

    /// The decoded value of a string node.
    fn text(&self, i: u32) -> Fb<Cow<'a, str>> {
        let n = self.node(i);
        let raw = &self.s[n.a as usize..n.b as usize];
        if !n.esc {
            return Ok(Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(raw) }));
        }
        let mut s = String::with_capacity(raw.len());
        unescape(raw, &mut s)?;
        Ok(Cow::Owned(s))
    }

    /// Python truthiness of the value.
    fn truthy(&self, i: u32) -> bool {
        let n = self.node(i);
        match n.k {
            K::Obj | K::Arr => n.n > 0,
            K::Str => n.b > n.a,
            K::Int => self.s[n.a as usize..n.b as usize].iter().any(|&c| (b'1'..=b'9').contains(&c)),
            K::Float => self.float(i).map(|x| x != 0.0).unwrap_or(true),
            K::True => true,
            K::False | K::Null => false,
        }
    }

    fn float(&self, i: u32) -> Fb<f64> {
        let n = self.node(i);
        std::str::from_utf8(&self.s[n.a as usize..n.b as usize])
            .map_err(|_| Fallback)?
            .parse()
            .map_err(|_| Fallback)
    }

    fn int(&self, i: u32) -> Fb<i64> {
        let n = self.node(i);
        std::str::from_utf8(&self.s[n.a as usize..n.b as usize])
            .map_err(|_| Fallback)?
            .parse()
            .map_err(|_| Fallback)
    }

    /// `a or b` on two optional lookups.
    fn or2(&self, a: Option<u32>, b: Option<u32>) -> Option<u32> {
        match a {
            Some(i) if self.truthy(i) => Some(i),
            _ => b,
        }
    }

    /// parsers.azure_keyvault._str: a non-empty string, else None.
    fn str_(&self, i: Option<u32>) -> Fb<Option<Cow<'a, str>>> {
        match i {
            Some(i) if self.kind(i) == K::Str && self.node(i).b > self.node(i).a => {
                Ok(Some(self.text(i)?))
            }
            _ => Ok(None),
        }
    }

    /// parsers.azure_keyvault._as_int.
    fn as_int(&self, i: Option<u32>) -> Fb<Option<i64>> {
        let Some(i) = i else { return Ok(None) };
        match self.kind(i) {
            K::Int => Ok(Some(self.int(i)?)),
            K::Float => Ok(float_as_int(self.float(i)?)),
            K::Str => str_as_int(&self.text(i)?),
            _ => Ok(None),
        }
    }

    /// parsers.azure_keyvault._status_code.
    fn status_code(&self, i: Option<u32>) -> Fb<Option<i64>> {
        let Some(i) = i else { return Ok(None) };
        match self.kind(i) {
            K::Int => {
                let v = self.int(i)?;
                Ok(if (100..600).contains(&v) { Some(v) } else { None })
            }
            K::Str => status_from_str(&self.text(i)?),
            _ => {
                let code = self.as_int(Some(i))?;
                Ok(code.filter(|c| (100..600).contains(c)))
            }
        }
    }
}

struct Children<'t, 'a> {
    t: &'t Tape<'a>,
    cur: u32,
}

impl Iterator for Children<'_, '_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.cur == NONE {
            return None;
        }
        let c = self.cur;
        self.cur = self.t.node(c).next;
        Some(c)
    }
}

fn float_as_int(f: f64) -> Option<i64> {
    if f.is_finite() && f.abs() < 1e15 {
        Some(f.trunc() as i64)
    } else {
        None
    }
}

/// _as_int of a str: digits -> int; an ASCII string without digits is never a finite
/// float (float() fails, or gives inf/nan) -> None; anything else: Python decides.
fn str_as_int(v: &str) -> Fb<Option<i64>> {
    let b = v.as_bytes();
    if !b.is_empty() && b.len() < 16 && b.iter().all(|c| c.is_ascii_digit()) {
        return Ok(Some(v.parse().map_err(|_| Fallback)?));
    }
    if v.is_ascii() && !b.iter().any(|c| c.is_ascii_digit()) {
        return Ok(None);
    }
    Err(Fallback)
}

fn http_reason(v: &str) -> Option<i64> {
    Some(match v {
        "ok" => 200,
        "created" => 201,
        "accepted" => 202,
        "nocontent" => 204,
        "partialcontent" => 206,
        "notmodified" => 304,
        "badrequest" => 400,
        "unauthorized" => 401,
        "forbidden" => 403,
        "notfound" => 404,
        "methodnotallowed" => 405,
        "requesttimeout" => 408,
        "conflict" => 409,
        "gone" => 410,
        "preconditionfailed" => 412,
        "toomanyrequests" => 429,
        "internalservererror" => 500,
        "notimplemented" => 501,
        "badgateway" => 502,
        "serviceunavailable" => 503,
        "gatewaytimeout" => 504,
        _ => return None,
    })
}

/// _status_code of a str value.
fn status_from_str(v: &str) -> Fb<Option<i64>> {
    let mut code = str_as_int(v)?;
    if code.is_none() {
        // ASCII without digits: the reason-phrase table.
        let key: String = v.chars().filter(|&c| c != ' ').collect::<String>().to_ascii_lowercase();
        code = http_reason(&key);
    }
    Ok(code.filter(|c| (100..600).contains(c)))
}

/// Python str.strip() + str.lower() for ASCII strings (else Fallback).
fn py_strip_lower(v: &str) -> Fb<String> {
    if !v.is_ascii() {
        return Err(Fallback);
    }
    let ws = |c: char| matches!(c as u32, 9..=13 | 28..=32);
    Ok(v.trim_matches(ws).to_ascii_lowercase())
}

fn success_word(s: &str) -> bool {
    matches!(s, "success" | "succeeded" | "accept" | "accepted")
}

fn failure_word(s: &str) -> bool {
    matches!(s, "failure" | "failed")
}

/// parsers.azure_keyvault._outcome.
fn outcome(status: Option<i64>, signature: Option<&str>, result_type: Option<&str>) -> Fb<&'static str> {
    if let Some(s) = status {
        return Ok(if s < 400 { "success" } else { "failure" });
    }
    if let Some(sig) = signature {
        let s = py_strip_lower(sig)?;
        let head = s.split('.').next().unwrap_or("");
        if success_word(head) {
            return Ok("success");
        }
        if failure_word(head) {
            return Ok("failure");
        }
        if let Some(code) = status_from_str(&s)? {
            return Ok(if code < 400 { "success" } else { "failure" });
        }
    }
    if let Some(rt) = result_type {
        let r = py_strip_lower(rt)?;
        if success_word(&r) {
            return Ok("success");
        }
        if failure_word(&r) {
            return Ok("failure");
        }
    }
    Ok("unknown")
}

// ============================================================================== vocabulary

const KEY: &str = "key";
const SECRET: &str = "secret";
const CERT: &str = "certificate";

/// AUDIT_OPERATIONS (exact name).
fn audit_known(op: &str) -> Option<(&'static str, Option<&'static str>)> {
    let k = Some(KEY);
    let s = Some(SECRET);
    let c = Some(CERT);
    Some(match op {
        "Authentication" => ("login", None),
        "VaultGet" => ("describe", None),
        "VaultList" => ("list", None),
        "VaultPut" => ("update_policy", None),
        "VaultPatch" => ("update_policy", None),
        "VaultDelete" => ("schedule_deletion", None),
        "VaultRecover" => ("cancel_deletion", None),
        "VaultPurge" => ("purge", None),
        "VaultGetDeleted" => ("describe", None),
        "VaultListDeleted" => ("list", None),
        "KeyCreate" => ("create", k),
        "KeyImport" => ("import", k),
        "KeyUpdate" => ("update_policy", k),
        "KeyRotate" => ("rotate", k),
        "KeyRotateIfDue" => ("rotate", k),
        "KeyRotationPolicySet" => ("update_policy", k),
        "KeyRotationPolicyUpdate" => ("update_policy", k),
        "KeyRotationPolicyGet" => ("describe", k),
        "KeyDelete" => ("schedule_deletion", k),
        "KeyPurge" => ("purge", k),
        "KeyRecover" => ("cancel_deletion", k),
        "KeyBackup" => ("backup", k),
        "KeyRestore" => ("restore", k),
        "SelectiveKeyRestore" => ("restore", k),
        "KeyEncrypt" => ("encrypt", k),
        "KeyDecrypt" => ("decrypt", k),
        "KeyWrap" => ("wrap", k),
        "KeyUnwrap" => ("unwrap", k),
        "KeySign" => ("sign", k),
        "KeyVerify" => ("verify", k),
        "KeyGet" => ("describe", k),
        "KeyGetDeleted" => ("describe", k),
        "KeyGetAttestation" => ("describe", k),
        "KeyList" => ("list", k),
        "KeyListVersions" => ("list", k),
        "KeyListDeleted" => ("list", k),
        "KeyRelease" => ("export", k),
        "SecretGet" => ("export", s),
        "SecretSet" => ("create", s),
        "SecretUpdate" => ("update_policy", s),
        "SecretDelete" => ("schedule_deletion", s),
        "SecretPurge" => ("purge", s),
        "SecretBackup" => ("backup", s),
        "SecretRestore" => ("restore", s),
        "SecretRecover" => ("cancel_deletion", s),
        "SecretGetDeleted" => ("describe", s),
        "SecretList" => ("list", s),
        "SecretListVersions" => ("list", s),
        "SecretListDeleted" => ("list", s),
        "CertificateCreate" => ("create", c),
        "CertificateImport" => ("import", c),
        "CertificateUpdate" => ("update_policy", c),
        "CertificateGet" => ("describe", c),
        "CertificateGetDeleted" => ("describe", c),
        "CertificateList" => ("list", c),
        "CertificateListVersions" => ("list", c),
        "CertificateListDeleted" => ("list", c),
        "CertificateDelete" => ("schedule_deletion", c),
        "CertificatePurge" => ("purge", c),
        "CertificateRecover" => ("cancel_deletion", c),
        "CertificateBackup" => ("backup", c),
        "CertificateRestore" => ("restore", c),
        "CertificatePolicyGet" => ("describe", c),
        "CertificatePolicySet" => ("update_policy", c),
        "CertificatePolicyUpdate" => ("update_policy", c),
        "CertificatePendingGet" => ("describe", c),
        "CertificatePendingMerge" => ("import", c),
        "CertificatePendingUpdate" => ("admin_other", c),
        "CertificatePendingDelete" => ("admin_other", c),
        "BackupCreate" => ("backup", None),
        "BackupStatus" => ("describe", None),
        "RestoreCreate" => ("restore", None),
        "RestoreStatus" => ("describe", None),
        "SecurityDomainDownload" => ("backup", None),
        "SecurityDomainUpload" => ("restore", None),
        "RoleAssignmentCreate" => ("update_policy", None),
        "RoleAssignmentDelete" => ("update_policy", None),
        "RoleAssignmentGet" => ("describe", None),
        "RoleAssignmentList" => ("list", None),
        "RoleDefinitionCreate" => ("update_policy", None),
        "RoleDefinitionDelete" => ("update_policy", None),
        "RoleDefinitionGet" => ("describe", None),
        "RoleDefinitionList" => ("list", None),
        _ => return None,
    })
}

const AUDIT_NAMES: &[&str] = &[
    "Authentication", "VaultGet", "VaultList", "VaultPut", "VaultPatch", "VaultDelete",
    "VaultRecover", "VaultPurge", "VaultGetDeleted", "VaultListDeleted", "KeyCreate",
    "KeyImport", "KeyUpdate", "KeyRotate", "KeyRotateIfDue", "KeyRotationPolicySet",
    "KeyRotationPolicyUpdate", "KeyRotationPolicyGet", "KeyDelete", "KeyPurge", "KeyRecover",
    "KeyBackup", "KeyRestore", "SelectiveKeyRestore", "KeyEncrypt", "KeyDecrypt", "KeyWrap",
    "KeyUnwrap", "KeySign", "KeyVerify", "KeyGet", "KeyGetDeleted", "KeyGetAttestation",
    "KeyList", "KeyListVersions", "KeyListDeleted", "KeyRelease", "SecretGet", "SecretSet",
    "SecretUpdate", "SecretDelete", "SecretPurge", "SecretBackup", "SecretRestore",
    "SecretRecover", "SecretGetDeleted", "SecretList", "SecretListVersions",
    "SecretListDeleted", "CertificateCreate", "CertificateImport", "CertificateUpdate",
    "CertificateGet", "CertificateGetDeleted", "CertificateList", "CertificateListVersions",
    "CertificateListDeleted", "CertificateDelete", "CertificatePurge", "CertificateRecover",
    "CertificateBackup", "CertificateRestore", "CertificatePolicyGet", "CertificatePolicySet",
    "CertificatePolicyUpdate", "CertificatePendingGet", "CertificatePendingMerge",
    "CertificatePendingUpdate", "CertificatePendingDelete", "BackupCreate", "BackupStatus",
    "RestoreCreate", "RestoreStatus", "SecurityDomainDownload", "SecurityDomainUpload",
    "RoleAssignmentCreate", "RoleAssignmentDelete", "RoleAssignmentGet", "RoleAssignmentList",
    "RoleDefinitionCreate", "RoleDefinitionDelete", "RoleDefinitionGet", "RoleDefinitionList",
];

/// parsers.azure_keyvault._audit_operation (ASCII names only).
fn audit_operation(op: &str) -> Fb<(&'static str, Option<&'static str>)> {
    if let Some(v) = audit_known(op) {
        return Ok(v);
    }
    if !op.is_ascii() {
        return Err(Fallback);
    }
    for name in AUDIT_NAMES {
        if name.eq_ignore_ascii_case(op) {
            return Ok(audit_known(name).unwrap());
        }
    }
    for (prefix, kind) in [("Key", KEY), ("Secret", SECRET), ("Certificate", CERT)] {
        if op.starts_with(prefix) {
            return Ok(("admin_other", Some(kind)));
        }
    }
    Ok(("admin_other", None))
}

// ================================================================ object URIs and ARM ids

/// What an object URI or ARM id names; the strings are ready-made Python objects.
struct ObjRef {
    vault: Option<Py<PyString>>,
    provider: &'static str,
    kind: Option<&'static str>,
    name: Option<Py<PyString>>,
    version: Option<Py<PyString>>,
    uid: Option<Py<PyString>>,
}

impl ObjRef {
    fn bare(py: Python<'_>, vault: &str, provider: &'static str) -> Self {
        ObjRef {
            vault: Some(PyString::new(py, vault).unbind()),
            provider,
            kind: None,
            name: None,
            version: None,
            uid: None,
        }
    }
}

struct ResRef {
    subscription: Option<Py<PyString>>,
    location: Option<Py<PyString>>,
    object: Option<Arc<ObjRef>>,
    ap_op: Option<String>,
    hsm_path: bool, // "/managedhsms/" in the lower-cased id
    id: Py<PyString>,   // the resource id itself, for extra
}

/// parsers.azure_keyvault._guid (ASCII input).
fn guid(v: &str) -> Cow<'_, str> {
    if v.len() == 36
        && v.bytes().filter(|&c| c == b'-').count() == 4
        && v.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-')
    {
        Cow::Owned(v.to_ascii_lowercase())
    } else {
        Cow::Borrowed(v)
    }
}

fn arm_kind(child: &str) -> Option<(&'static str, &'static str)> {
    match child {
        "keys" => Some((KEY, "keys")),
        "secrets" => Some((SECRET, "secrets")),
        "certificates" => Some((CERT, "certificates")),
        _ => None,
    }
}

/// parsers.azure_keyvault._resource (ASCII ids only).
fn resource_uncached(py: Python<'_>, rid: &str) -> Fb<ResRef> {
    if !rid.is_ascii() {
        return Err(Fallback);
    }
    let segs: Vec<&str> = rid.split('/').filter(|s| !s.is_empty()).collect();
    let n = segs.len();
    let mut r = ResRef {
        subscription: None,
        location: None,
        object: None,
        ap_op: None,
        hsm_path: rid.to_ascii_lowercase().contains("/managedhsms/"),
        id: PyString::new(py, rid).unbind(),
    };
    let mut vault: Option<String> = None;
    let mut vault_idx = 0usize;
    let mut hsm = false;
    for (i, s) in segs.iter().enumerate() {
        if i + 1 >= n {
            break;
        }
        if s.eq_ignore_ascii_case("subscriptions") && r.subscription.is_none() {
            r.subscription = Some(PyString::new(py, &guid(segs[i + 1])).unbind());
        } else if s.eq_ignore_ascii_case("locations") && r.location.is_none() {
            r.location = Some(PyString::new(py, &segs[i + 1].to_ascii_lowercase()).unbind());
        } else if vault.is_none()
            && ["vaults", "managedhsms", "deletedvaults", "deletedmanagedhsms"]
                .iter()
                .any(|v| s.eq_ignore_ascii_case(v))
        {
            vault = Some(segs[i + 1].to_ascii_lowercase());
            vault_idx = i + 1;
            hsm = s.len() >= 11 && s[s.len() - 11..].eq_ignore_ascii_case("managedhsms");
        }
    }
    let Some(vault) = vault else { return Ok(r) };
    let host = if hsm {
        format!("{vault}.managedhsm.azure.net")
    } else {
        format!("{vault}.vault.azure.net")
    };
    let mut obj = ObjRef::bare(py, &vault, if hsm { PROVIDER_HSM } else { PROVIDER_KV });
    if vault_idx + 1 < n {
        let child = segs[vault_idx + 1].to_ascii_lowercase();
        let kind = arm_kind(&child);
        obj.kind = kind.map(|k| k.0);
        if kind.is_some() && vault_idx + 2 < n {
            let name = segs[vault_idx + 2];
            obj.name = Some(PyString::new(py, name).unbind());
            let uid = format!("https://{host}/{child}/{}", name.to_ascii_lowercase());
            obj.uid = Some(PyString::new(py, &uid).unbind());
            if vault_idx + 4 < n && segs[vault_idx + 3].eq_ignore_ascii_case("versions") {
                obj.version = Some(PyString::new(py, segs[vault_idx + 4]).unbind());
            }
        } else if child == "accesspolicies" && vault_idx + 2 < n {
            r.ap_op = Some(segs[vault_idx + 2].to_ascii_lowercase());
        }
    }
    r.object = Some(Arc::new(obj));
    Ok(r)
}

fn uri_collection(seg: &str) -> Option<(&'static str, &'static str)> {
    let low = seg.to_ascii_lowercase();
    Some(match low.as_str() {
        "keys" | "deletedkeys" => (KEY, "keys"),
        "secrets" | "deletedsecrets" => (SECRET, "secrets"),
        "certificates" | "deletedcertificates" => (CERT, "certificates"),
        _ => return None,
    })
}

fn not_a_version(v: &str) -> bool {
    matches!(
        v,
        "versions" | "create" | "import" | "backup" | "restore" | "rotate" | "rotationpolicy"
            | "release" | "encrypt" | "decrypt" | "wrapkey" | "unwrapkey" | "sign" | "verify"
            | "recover" | "attestation" | "pending" | "policy" | "update"
    )
}

/// parsers.azure_keyvault.parse_object_uri (ASCII URIs only).
fn parse_object_uri_uncached(py: Python<'_>, uri: &str) -> Fb<Option<Arc<ObjRef>>> {
    if !uri.is_ascii() {
        return Err(Fallback);
    }
    let head = &uri[..uri.len().min(8)];
    let mut rest = if head.len() == 8 && head.eq_ignore_ascii_case("https://") {
        &uri[8..]
    } else if head.len() >= 7 && head[..7].eq_ignore_ascii_case("http://") {
        &uri[7..]
    } else {
        return Ok(None);
    };
    if let Some(cut) = rest.find('?') {
        rest = &rest[..cut];
    }
    if let Some(cut) = rest.find('#') {
        rest = &rest[..cut];
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    if host.contains('@') {
        return Err(Fallback); // userinfo: Python drops it from the uid
    }
    let host = host.to_ascii_lowercase();
    if host.is_empty() {
        return Ok(None);
    }
    if !host.contains(".vault.") && !host.contains(".managedhsm.") {
        if path.to_ascii_lowercase().contains("/providers/") {
            return Ok(resource(py, path)?.object.clone());
        }
        return Ok(None);
    }
    let provider = if host.contains(".managedhsm.") { PROVIDER_HSM } else { PROVIDER_KV };
    let vault = host.split('.').next().unwrap_or("");
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut obj = ObjRef::bare(py, vault, provider);
    if segs.is_empty() {
        return Ok(Some(Arc::new(obj)));
    }
    let Some((kind, canonical)) = uri_collection(segs[0]) else {
        return Ok(Some(Arc::new(obj)));
    };
    let second = segs.get(1).map(|s| s.to_ascii_lowercase());
    if segs.len() < 2 || matches!(second.as_deref(), Some("restore" | "import" | "issuers" | "contacts")) {
        let settings = kind == CERT && matches!(second.as_deref(), Some("issuers" | "contacts"));
        obj.kind = if settings { None } else { Some(kind) };
        return Ok(Some(Arc::new(obj)));
    }
    let name = segs[1];
    if segs.len() > 2 {
        let v = segs[2];
        if !not_a_version(&v.to_ascii_lowercase()) && v.bytes().all(|c| c.is_ascii_alphanumeric()) {
            obj.version = Some(PyString::new(py, v).unbind());
        }
    }
    let uid = format!("https://{host}/{canonical}/{}", name.to_ascii_lowercase());
    obj.kind = Some(kind);
    obj.name = Some(PyString::new(py, name).unbind());
    obj.uid = Some(PyString::new(py, &uid).unbind());
    Ok(Some(Arc::new(obj)))
}

// ------------------------------------------------------------------------ caches

/// A direct-mapped memo table (one entry per slot, a colliding key replaces it): cheaper
/// than a hash map for the few distinct names, ids and addresses a log repeats.
struct Memo<V> {
    slots: Vec<Option<(Box<[u8]>, V)>>,
}

const MEMO_SLOTS: usize = 4096;

#[inline]
fn load8(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[inline]
fn memo_slot(b: &[u8]) -> usize {
    // FxHash over every byte: ids often differ only in a few middle characters.
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = b.len() as u64;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        h = (h.rotate_left(5) ^ u64::from_le_bytes(c.try_into().unwrap())).wrapping_mul(K);
    }
    let mut tail = 0u64;
    for &c in chunks.remainder() {
        tail = (tail << 8) | c as u64;
    }
    h = (h.rotate_left(5) ^ tail).wrapping_mul(K);
    (h >> 52) as usize % MEMO_SLOTS
}

impl<V> Memo<V> {
    const fn new() -> Self {
        Memo { slots: Vec::new() }
    }

    #[inline]
    fn get(&self, k: &[u8]) -> Option<&V> {
        match self.slots.get(memo_slot(k)) {
            Some(Some((key, v))) if &**key == k => Some(v),
            _ => None,
        }
    }

    fn put(&mut self, k: &[u8], v: V) {
        if self.slots.is_empty() {
            self.slots.resize_with(MEMO_SLOTS, || None);
        }
        let i = memo_slot(k);
        self.slots[i] = Some((k.into(), v));
    }
}

static URIS: GilProtected<RefCell<Memo<Option<Arc<ObjRef>>>>> =
    GilProtected::new(RefCell::new(Memo::new()));
static RESOURCES: GilProtected<RefCell<Memo<Arc<ResRef>>>> =
    GilProtected::new(RefCell::new(Memo::new()));
static STRINGS: GilProtected<RefCell<Memo<Py<PyString>>>> =
    GilProtected::new(RefCell::new(Memo::new()));

/// parsers.azure_keyvault.parse_object_uri, memoised like the Python lru_cache.
fn parse_object_uri(py: Python<'_>, uri: &str) -> Fb<Option<Arc<ObjRef>>> {
    if let Some(hit) = URIS.get(py).borrow().get(uri.as_bytes()) {
        return Ok(hit.clone());
    }
    let v = parse_object_uri_uncached(py, uri)?;
    URIS.get(py).borrow_mut().put(uri.as_bytes(), v.clone());
    Ok(v)
}

/// parsers.azure_keyvault._resource, memoised.
fn resource(py: Python<'_>, rid: &str) -> Fb<Arc<ResRef>> {
    if let Some(hit) = RESOURCES.get(py).borrow().get(rid.as_bytes()) {
        return Ok(hit.clone());
    }
    let v = Arc::new(resource_uncached(py, rid)?);
    RESOURCES.get(py).borrow_mut().put(rid.as_bytes(), v.clone());
    Ok(v)
}

/// A Python str for a value that repeats across records (names, ids, addresses).
fn cached_str<'py>(py: Python<'py>, v: &str) -> Bound<'py, PyString> {
    if v.len() > 256 {
        return PyString::new(py, v);
    }
    let table = STRINGS.get(py);
    if let Some(s) = table.borrow().get(v.as_bytes()) {
        return s.bind(py).clone();
    }
    let s = PyString::new(py, v);
    table.borrow_mut().put(v.as_bytes(), s.clone().unbind());
    s
}

fn cached_opt<'py>(py: Python<'py>, v: Option<&str>) -> Option<Bound<'py, PyString>> {
    v.map(|s| cached_str(py, s))
}

// ============================================================================= claims

#[derive(Default, Debug)]
struct Claims<'a> {
    oid: Option<Cow<'a, str>>,
    upn: Option<Cow<'a, str>>,
    unique_name: Option<Cow<'a, str>>,
    name: Option<Cow<'a, str>>,
    appid: Option<Cow<'a, str>>,
    tid: Option<Cow<'a, str>>,
    idtyp: Option<Cow<'a, str>>,
    xms_mirid: Option<Cow<'a, str>>,
}

impl<'a> Claims<'a> {
    fn slot(&mut self, canonical: &str) -> &mut Option<Cow<'a, str>> {
        match canonical {
            "oid" => &mut self.oid,
            "upn" => &mut self.upn,
            "unique_name" => &mut self.unique_name,
            "name" => &mut self.name,
            "appid" => &mut self.appid,
            "tid" => &mut self.tid,
            "idtyp" => &mut self.idtyp,
            _ => &mut self.xms_mirid,
        }
    }

    fn is_empty(&self) -> bool {
        self.oid.is_none()
            && self.upn.is_none()
            && self.unique_name.is_none()
            && self.name.is_none()
            && self.appid.is_none()
            && self.tid.is_none()
            && self.idtyp.is_none()
            && self.xms_mirid.is_none()
    }

    fn into_owned(self) -> Claims<'static> {
        let o = |v: Option<Cow<'a, str>>| v.map(|c| Cow::Owned(c.into_owned()));
        Claims {
            oid: o(self.oid),
            upn: o(self.upn),
            unique_name: o(self.unique_name),
            name: o(self.name),
            appid: o(self.appid),
            tid: o(self.tid),
            idtyp: o(self.idtyp),
            xms_mirid: o(self.xms_mirid),
        }
    }
}

/// parsers.azure_keyvault._claim_key (ASCII names only).
fn claim_key(name: &str) -> Fb<Option<&'static str>> {
    if !name.is_ascii() {
        return Err(Fallback);
    }
    let n = name.to_ascii_lowercase();
    let n: &str = if let Some(i) = n.rfind('/') {
        &n[i + 1..]
    } else if n.starts_with("http_schemas_") {
        match n.rfind("_claims_") {
            Some(i) => &n[i + 8..],
            None => &n,
        }
    } else {
        &n
    };
    Ok(match n {
        "oid" | "objectidentifier" => Some("oid"),
        "upn" => Some("upn"),
        "unique_name" => Some("unique_name"),
        "name" => Some("name"),
        "appid" | "azp" => Some("appid"),
        "tid" | "tenantid" => Some("tid"),
        "idtyp" => Some("idtyp"),
        "xms_mirid" => Some("xms_mirid"),
        _ => None,
    })
}

fn collect_claims<'a>(t: &Tape<'a>, node: u32, out: &mut Claims<'a>, depth: u32) -> Fb<()> {
    for c in t.children(node) {
        match t.kind(c) {
            K::Str if t.truthy(c) => {
                if let Some(ck) = claim_key(t.key(c))? {
                    let slot = out.slot(ck);
                    if slot.is_none() {
                        *slot = Some(t.text(c)?);
                    }
                }
            }
            K::Obj if depth < 4 => collect_claims(t, c, out, depth + 1)?,
            _ => {}
        }
    }
    Ok(())
}

const SHORT_CLAIMS: [&str; 8] = ["oid", "upn", "unique_name", "name", "appid", "tid", "idtyp", "xms_mirid"];
const LONG_CLAIMS: [(&str, &str); 3] = [
    ("http://schemas.microsoft.com/identity/claims/tenantid", "tid"),
    ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn", "upn"),
    ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name", "name"),
];

fn claims_of_object<'a>(t: &Tape<'a>, ident: u32) -> Fb<Claims<'a>> {
    let mut out = Claims::default();
    let mut claim = t.get(ident, "claim");
    if !matches!(claim.map(|c| t.kind(c)), Some(K::Obj)) {
        claim = t.get(ident, "claims");
    }
    let Some(claim) = claim.filter(|&c| t.kind(c) == K::Obj) else { return Ok(out) };
    // One pass: the members the hot path reads (short names, then three URI names).
    let mut short: [Option<u32>; 8] = [None; 8];
    let mut long: [Option<u32>; 3] = [None; 3];
    for c in t.children(claim) {
        let k = t.key(c);
        if let Some(i) = SHORT_CLAIMS.iter().position(|&n| n == k) {
            short[i] = Some(c);
        } else if k.len() > 40 {
            if let Some(i) = LONG_CLAIMS.iter().position(|&(n, _)| n == k) {
                long[i] = Some(c);
            }
        }
    }
    if matches!(short[0].map(|c| t.kind(c)), Some(K::Str)) {
        for (i, name) in SHORT_CLAIMS.iter().enumerate() {
            if let Some(v) = t.str_(short[i])? {
                *out.slot(name) = Some(v);
            }
        }
        for (i, (_, name)) in LONG_CLAIMS.iter().enumerate() {
            if out.slot(name).is_none() {
                if let Some(v) = t.str_(long[i])? {
                    *out.slot(name) = Some(v);
                }
            }
        }
    } else {
        collect_claims(t, claim, &mut out, 0)?;
    }
    Ok(out)
}

/// parsers.azure_keyvault._identity_claims.
fn identity_claims<'a>(t: &Tape<'a>, identity: Option<u32>) -> Fb<Claims<'a>> {
    let Some(i) = identity else { return Ok(Claims::default()) };
    match t.kind(i) {
        K::Obj => claims_of_object(t, i),
        K::Str => {
            let s = t.text(i)?;
            if !s.starts_with('{') {
                return Ok(Claims::default());
            }
            let (inner, _, _) = Scanner::<false>::new(s.as_bytes()).run()?;
            Ok(claims_of_object(&inner, 0)?.into_owned())
        }
        _ => Ok(Claims::default()),
    }
}

/// parsers.azure_keyvault._principal -> (user.id, user.name, principal type).
fn principal<'c>(
    c: &'c Claims<'_>,
    caller: Option<&'c str>,
) -> (Option<&'c str>, Option<Cow<'c, str>>, Option<&'static str>) {
    let idtyp = c.idtyp.as_deref().unwrap_or("");
    let mut display: Option<Cow<'c, str>> =
        c.upn.as_deref().or(c.unique_name.as_deref()).or(c.name.as_deref()).map(Cow::Borrowed);
    let mut ptype: Option<&'static str>;
    if let Some(mirid) = c.xms_mirid.as_deref() {
        ptype = Some("managed_identity");
        if display.is_none() {
            // May be "": falsy for `display or appid`, but not None for the caller rule.
            let trimmed = mirid.trim_end_matches('/');
            display = Some(Cow::Borrowed(trimmed.rsplit('/').next().unwrap_or("")));
        }
    } else if idtyp.eq_ignore_ascii_case("user") {
        ptype = Some("user");
    } else if idtyp.eq_ignore_ascii_case("app") {
        ptype = Some("service_principal");
    } else if c.upn.is_some() || display.as_deref().is_some_and(|d| d.contains('@')) {
        ptype = Some("user");
    } else if c.appid.is_some() || c.oid.is_some() {
        ptype = Some("service_principal");
    } else {
        ptype = None;
    }
    let mut user_id = c.oid.as_deref().or(c.appid.as_deref());
    if let Some(caller) = caller {
        if user_id.is_none() {
            user_id = Some(caller);
        }
        if display.is_none() && caller.contains('@') {
            display = Some(Cow::Borrowed(caller));
        }
        if ptype.is_none() {
            ptype = Some(if caller.contains('@') { "user" } else { "service_principal" });
        }
    }
    let name = display.filter(|d| !d.is_empty()).or(c.appid.as_deref().map(Cow::Borrowed));
    (user_id, name, ptype)
}

// ========================================================================= key attributes

/// days since 1970-01-01 -> (y, m, d)
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// parsers.azure_keyvault._epoch_iso.
fn epoch_iso(secs: Option<i64>) -> Option<String> {
    let s = secs?;
    if !(0 < s && s < 32503680000) {
        return None;
    }
    let (y, m, d) = civil(s.div_euclid(86400));
    let r = s.rem_euclid(86400);
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        r / 3600,
        (r % 3600) / 60,
        r % 60
    ))
}

#[derive(Default)]
struct KeyAttrs {
    spec: Option<String>,
    usage: Option<String>,
    enabled: Option<bool>,
    expires: Option<String>,
}

/// parsers.azure_keyvault._key_attributes.
fn key_attributes(t: &Tape<'_>, props: Option<u32>) -> Fb<KeyAttrs> {
    let mut r = KeyAttrs { spec: None, usage: None, enabled: None, expires: None };
    let Some(p) = props else { return Ok(r) };
    let mut spec = match t.str_(t.get(p, "type"))? {
        Some(s) => Some(s),
        None => t.str_(t.get(p, "kty"))?,
    };
    if let Some(sp) = &spec {
        let size = t.as_int(t.or2(t.get(p, "size"), t.get(p, "keySize")))?;
        let curve = t.str_(t.or2(t.get(p, "curve"), t.get(p, "crv")))?;
        if let Some(sz) = size.filter(|&v| v != 0) {
            spec = Some(Cow::Owned(format!("{sp} {sz}")));
        } else if let Some(cv) = curve {
            spec = Some(Cow::Owned(format!("{sp} {cv}")));
        }
    }
    r.spec = spec.map(|s| s.into_owned());
    if let Some(ops) = t.get(p, "operations").filter(|&o| t.kind(o) == K::Arr) {
        let mut names: Vec<Cow<'_, str>> = Vec::new();
        for c in t.children(ops) {
            if t.kind(c) == K::Str {
                names.push(t.text(c)?);
            }
        }
        let joined = names.join(",");
        if !joined.is_empty() {
            r.usage = Some(joined);
        }
    }
    if let Some(attrs) = t.get(p, "attributes").filter(|&a| t.kind(a) == K::Obj) {
        match t.get(attrs, "enabled").map(|e| t.kind(e)) {
            Some(K::True) => r.enabled = Some(true),
            Some(K::False) => r.enabled = Some(false),
            _ => {}
        }
        r.expires = epoch_iso(t.as_int(t.get(attrs, "exp"))?);
    }
    Ok(r)
}

// ============================================================================ the record

/// The top-level members an AuditEvent record is read from (one pass over the object).
#[derive(Default)]
struct Top {
    time: Option<u32>,
    category: Option<u32>,
    operation_name: Option<u32>,
    result_type: Option<u32>,
    result_signature: Option<u32>,
    result_description: Option<u32>,
    duration_ms: Option<u32>,
    caller_ip: Option<u32>,
    correlation_id: Option<u32>,
    identity: Option<u32>,
    properties: Option<u32>,
    tenant_id: Option<u32>,
    tenant_id_pascal: Option<u32>,
    location: Option<u32>,
    http_status_code: Option<u32>,
    request_uri: Option<u32>,
    client_info: Option<u32>,
    resource_id: Option<u32>,
    records: Option<u32>,
    // Activity Log
    status: Option<u32>,
    sub_status: Option<u32>,
    claims: Option<u32>,
    http_request: Option<u32>,
    caller: Option<u32>,
    subscription_id: Option<u32>,
    event_data_id: Option<u32>,
    event_timestamp: Option<u32>,
}

impl Top {
    fn read(t: &Tape<'_>, obj: u32) -> Top {
        let mut top = Top::default();
        for c in t.children(obj) {
            let slot = match t.key(c) {
                "time" => &mut top.time,
                "category" => &mut top.category,
                "operationName" => &mut top.operation_name,
                "resultType" => &mut top.result_type,
                "resultSignature" => &mut top.result_signature,
                "resultDescription" => &mut top.result_description,
                "durationMs" => &mut top.duration_ms,
                "callerIpAddress" => &mut top.caller_ip,
                "correlationId" => &mut top.correlation_id,
                "identity" => &mut top.identity,
                "properties" => &mut top.properties,
                "tenantId" => &mut top.tenant_id,
                "TenantId" => &mut top.tenant_id_pascal,
                "location" => &mut top.location,
                "httpStatusCode" => &mut top.http_status_code,
                "requestUri" => &mut top.request_uri,
                "clientInfo" => &mut top.client_info,
                "resourceId" => &mut top.resource_id,
                "records" => &mut top.records,
                "status" => &mut top.status,
                "subStatus" => &mut top.sub_status,
                "claims" => &mut top.claims,
                "httpRequest" => &mut top.http_request,
                "caller" => &mut top.caller,
                "subscriptionId" => &mut top.subscription_id,
                "eventDataId" => &mut top.event_data_id,
                "eventTimestamp" => &mut top.event_timestamp,
                _ => continue,
            };
            *slot = Some(c);
        }
        top
    }
}

#[derive(Default)]
struct Props {
    id: Option<u32>,
    client_info: Option<u32>,
    http_status_code: Option<u32>,
    request_uri: Option<u32>,
    key_properties: Option<u32>,
    secret_properties: Option<u32>,
    certificate_properties: Option<u32>,
    status_code: Option<u32>,
    status_message: Option<u32>,
    service_request_id: Option<u32>,
}

impl Props {
    fn read(t: &Tape<'_>, obj: Option<u32>) -> Props {
        let mut p = Props::default();
        let Some(obj) = obj else { return p };
        for c in t.children(obj) {
            let slot = match t.key(c) {
                "id" => &mut p.id,
                "clientInfo" => &mut p.client_info,
                "httpStatusCode" => &mut p.http_status_code,
                "requestUri" => &mut p.request_uri,
                "keyProperties" => &mut p.key_properties,
                "secretProperties" => &mut p.secret_properties,
                "certificateProperties" => &mut p.certificate_properties,
                "statusCode" => &mut p.status_code,
                "statusMessage" => &mut p.status_message,
                "serviceRequestId" => &mut p.service_request_id,
                _ => continue,
            };
            *slot = Some(c);
        }
        p
    }
}

/// The inputs of AzureKeyVaultParser._emit, read from one record shape.
struct Emit<'a, 'o> {
    op: &'o str,
    category: Cow<'a, str>,
    time: Option<u32>,
    status: Option<i64>,
    signature: Option<Cow<'a, str>>,
    result_type: Option<Cow<'a, str>>,
    description: Option<Cow<'a, str>>,
    claims: Claims<'a>,
    tenant: Option<Cow<'a, str>>,
    caller: Option<Cow<'a, str>>,
    ip: Option<Cow<'a, str>>,
    client: Option<Cow<'a, str>>,
    object_id: Option<Cow<'a, str>>,
    request_uri: Option<Cow<'a, str>>,
    resource_id: Option<Cow<'a, str>>,
    subscription: Option<Cow<'a, str>>,
    correlation: Option<Cow<'a, str>>,
    duration: Option<i64>,
    location: Option<Cow<'a, str>>,
    key_attrs: KeyAttrs,
    arm: bool,
    vendor_id: Option<Cow<'a, str>>,
    request_id: Option<Cow<'a, str>>,
}

/// AzureKeyVaultParser._audit: AuditEvent resource-log record (Key Vault or Managed HSM).
fn audit_fields<'a, 'o>(t: &Tape<'a>, top: &Top, op: &'o str) -> Fb<Emit<'a, 'o>> {
    if let Some(c) = top.category {
        if t.kind(c) == K::Str && t.truthy(c) && &*t.text(c)? != "AuditEvent" {
            return Err(Fallback); // non_audit_category: skipped by Python
        }
    }
    let props = Props::read(t, top.properties.filter(|&p| t.kind(p) == K::Obj));
    // Managed HSM writes these at top level, Key Vault under properties.
    let status_node = props.http_status_code.or(top.http_status_code);
    let kind_hint = audit_operation(op)?.1;
    Ok(Emit {
        op,
        category: Cow::Borrowed("AuditEvent"),
        time: Some(top.time.ok_or(Fallback)?),
        status: t.status_code(status_node)?,
        signature: t.str_(top.result_signature)?,
        result_type: t.str_(top.result_type)?,
        description: t.str_(top.result_description)?,
        claims: identity_claims(t, top.identity)?,
        tenant: t.str_(t.or2(top.tenant_id, top.tenant_id_pascal))?,
        caller: None,
        ip: t.str_(top.caller_ip)?,
        client: t.str_(t.or2(props.client_info, top.client_info))?,
        object_id: t.str_(props.id)?,
        request_uri: t.str_(t.or2(props.request_uri, top.request_uri))?,
        resource_id: t.str_(top.resource_id)?,
        subscription: None,
        correlation: t.str_(top.correlation_id)?,
        duration: t.as_int(top.duration_ms)?,
        location: t.str_(top.location)?,
        key_attrs: key_attributes(
            t,
            match kind_hint {
                Some(KEY) => props.key_properties,
                Some(SECRET) => props.secret_properties,
                Some(CERT) => props.certificate_properties,
                _ => None,
            }
            .filter(|&p| t.kind(p) == K::Obj),
        )?,
        arm: false,
        vendor_id: None,
        request_id: None,
    })
}

/// AzureKeyVaultParser._activity: Activity Log record, diagnostic-settings export shape
/// (`operationName` a string with '/'). Access-policy writes and vault writes with a request
/// body (their details) and non-terminal (`Start`) / non-Key Vault records are left to Python.
fn activity_fields<'a, 'o>(t: &Tape<'a>, top: &Top, op: &'o str) -> Fb<Emit<'a, 'o>> {
    if !op.is_ascii() {
        return Err(Fallback);
    }
    let low = op.to_ascii_lowercase();
    // A vault write with a request body may rewrite access policies: Python reads the body.
    let vault_write_body = low.ends_with("/vaults/write")
        && top.properties.filter(|&p| t.kind(p) == K::Obj).is_some_and(|p| {
            t.get(p, "requestbody").is_some() || t.get(p, "requestBody").is_some()
        });
    if !low.starts_with("microsoft.keyvault/") || low.contains("/accesspolicies/") || vault_write_body
    {
        return Err(Fallback);
    }
    let mut result_type = t.str_(top.result_type)?;
    if result_type.is_none() {
        if let Some(st) = top.status.filter(|&x| t.kind(x) == K::Obj) {
            result_type = t.str_(t.get(st, "value"))?;
        }
    }
    let signature = t.str_(top.result_signature)?;
    if let Some(r) = &result_type {
        if !r.is_ascii() || matches!(r.to_ascii_lowercase().as_str(), "start" | "started") {
            return Err(Fallback); // activity_start (skipped), or a non-ASCII word
        }
    }
    if let Some(sg) = &signature {
        if !sg.is_ascii() || sg.to_ascii_lowercase().starts_with("started") {
            return Err(Fallback);
        }
    }
    let props = Props::read(t, top.properties.filter(|&p| t.kind(p) == K::Obj));
    let mut status = t.status_code(props.status_code)?;
    if status.is_none() {
        if let Some(sub) = top.sub_status.filter(|&x| t.kind(x) == K::Obj) {
            status = t.status_code(t.get(sub, "value"))?;
        }
    }
    let category_node = match top.category {
        Some(c) if t.kind(c) == K::Obj => t.get(c, "value"),
        other => other,
    };
    let category = t.str_(category_node)?.unwrap_or(Cow::Borrowed("Administrative"));
    let mut claims = identity_claims(t, top.identity)?;
    if claims.is_empty() {
        if let Some(c) = top.claims.filter(|&x| t.kind(x) == K::Obj) {
            collect_claims(t, c, &mut claims, 0)?;
        }
    }
    let mut ip = t.str_(top.caller_ip)?;
    if ip.is_none() {
        if let Some(h) = top.http_request.filter(|&x| t.kind(x) == K::Obj) {
            ip = t.str_(t.get(h, "clientIpAddress"))?;
        }
    }
    let time = match top.time {
        Some(x) => Some(x),
        None => top.event_timestamp,
    };
    let description = match t.str_(top.result_description)? {
        Some(d) => Some(d),
        None => t.str_(props.status_message)?,
    };
    Ok(Emit {
        op,
        category,
        time,
        status,
        signature,
        result_type,
        description,
        claims,
        tenant: t.str_(top.tenant_id)?,
        caller: t.str_(top.caller)?,
        ip,
        client: None,
        object_id: None,
        request_uri: None,
        resource_id: t.str_(top.resource_id)?,
        subscription: t.str_(top.subscription_id)?,
        correlation: t.str_(top.correlation_id)?,
        duration: t.as_int(top.duration_ms)?,
        location: t.str_(top.location)?,
        key_attrs: KeyAttrs::default(),
        arm: true,
        vendor_id: t.str_(top.event_data_id)?,
        request_id: t.str_(props.service_request_id)?,
    })
}

/// AzureKeyVaultParser._log_analytics: an AZKVAuditLogs or AzureDiagnostics row exported
/// from Log Analytics (`OperationName`, PascalCase or type-suffixed columns).
fn log_analytics_fields<'a, 'o>(t: &Tape<'a>, op: &'o str) -> Fb<Emit<'a, 'o>> {
    let rec = 0u32;
    let g = |k: &str| t.get(rec, k);
    let table = g("Type").filter(|&x| t.kind(x) == K::Str).map(|x| t.text(x)).transpose()?;
    let azkv = table.as_deref() == Some("AZKVAuditLogs")
        || (table.as_deref() != Some("AzureDiagnostics")
            && (g("Identity").is_some() || g("HttpStatusCode").is_some() || g("RequestUri").is_some()));
    let kind_hint = audit_operation(op)?.1;
    let time = match g("TimeGenerated") {
        Some(x) => Some(x),
        None => g("TimeGenerated [UTC]"),
    };
    let base = |claims: Claims<'a>| -> Fb<Emit<'a, 'o>> {
        Ok(Emit {
            op,
            category: Cow::Borrowed("AuditEvent"),
            time,
            status: None,
            signature: t.str_(g("ResultSignature"))?,
            result_type: t.str_(g("ResultType"))?,
            description: t.str_(g("ResultDescription"))?,
            claims,
            tenant: None,
            caller: None,
            ip: None,
            client: None,
            object_id: None,
            request_uri: None,
            resource_id: None,
            subscription: None,
            correlation: t.str_(g("CorrelationId"))?,
            duration: t.as_int(g("DurationMs"))?,
            location: None,
            key_attrs: KeyAttrs::default(),
            arm: false,
            vendor_id: None,
            request_id: None,
        })
    };
    if azkv {
        let mut e = base(identity_claims(t, g("Identity"))?)?;
        e.status = t.status_code(g("HttpStatusCode"))?;
        e.ip = t.str_(g("CallerIpAddress"))?;
        e.client = t.str_(g("ClientInfo"))?;
        e.object_id = t.str_(g("Id"))?;
        e.request_uri = t.str_(g("RequestUri"))?;
        e.resource_id = t.str_(t.or2(g("_ResourceId"), g("ResourceId")))?;
        e.subscription = t.str_(t.or2(g("_SubscriptionId"), g("SubscriptionId")))?;
        let column = match kind_hint {
            Some(KEY) => g("KeyProperties"),
            Some(SECRET) => g("SecretProperties"),
            Some(CERT) => g("CertificateProperties"),
            _ => None,
        };
        // _load_dict: an object, or a JSON string of one.
        e.key_attrs = match column.map(|c| (c, t.kind(c))) {
            Some((c, K::Obj)) => key_attributes(t, Some(c))?,
            Some((c, K::Str)) => {
                let text = t.text(c)?;
                if text.starts_with('{') {
                    let (inner, _, _) = Scanner::<false>::new(text.as_bytes()).run()?;
                    key_attributes(&inner, Some(0))?
                } else {
                    KeyAttrs::default()
                }
            }
            _ => KeyAttrs::default(),
        };
        return Ok(e);
    }
    if let Some(rp) = t.str_(g("ResourceProvider"))? {
        if !rp.is_ascii() || !rp.eq_ignore_ascii_case("MICROSOFT.KEYVAULT") {
            return Err(Fallback); // non_keyvault_event (or a non-ASCII name): Python
        }
    }
    if let Some(c) = t.str_(g("Category"))? {
        if c != "AuditEvent" {
            return Err(Fallback); // non_audit_category
        }
    }
    let mut e = base(diagnostics_claims(t, rec)?)?;
    e.status = t.status_code(g("httpStatusCode_d"))?;
    e.ip = t.str_(t.or2(g("CallerIPAddress"), g("CallerIpAddress")))?;
    e.client = t.str_(g("clientInfo_s"))?;
    e.object_id = t.str_(g("id_s"))?;
    e.request_uri = t.str_(g("requestUri_s"))?;
    e.resource_id = t.str_(t.or2(g("ResourceId"), g("_ResourceId")))?;
    e.subscription = t.str_(g("SubscriptionId"))?;
    e.key_attrs = diagnostics_key_attributes(t, rec, kind_hint)?;
    Ok(e)
}

/// parsers.azure_keyvault._diagnostics_claims.
fn diagnostics_claims<'a>(t: &Tape<'a>, rec: u32) -> Fb<Claims<'a>> {
    const COLUMNS: [(&str, &str); 10] = [
        ("identity_claim_oid_g", "oid"),
        ("identity_claim_http_schemas_microsoft_com_identity_claims_objectidentifier_g", "oid"),
        ("identity_claim_upn_s", "upn"),
        ("identity_claim_http_schemas_xmlsoap_org_ws_2005_05_identity_claims_upn_s", "upn"),
        ("identity_claim_unique_name_s", "unique_name"),
        ("identity_claim_appid_g", "appid"),
        ("identity_claim_tid_g", "tid"),
        ("identity_claim_http_schemas_microsoft_com_identity_claims_tenantid_g", "tid"),
        ("identity_claim_idtyp_s", "idtyp"),
        ("identity_claim_xms_mirid_s", "xms_mirid"),
    ];
    let mut out = Claims::default();
    for (col, canonical) in COLUMNS {
        if let Some(v) = t.str_(t.get(rec, col))? {
            let slot = out.slot(canonical);
            if slot.is_none() {
                *slot = Some(v);
            }
        }
    }
    if out.oid.is_some() {
        return Ok(out);
    }
    for c in t.children(rec) {
        let col = t.key(c);
        if !col.starts_with("identity_claim_") || t.kind(c) != K::Str || !t.truthy(c) {
            continue;
        }
        if !col.is_ascii() {
            return Err(Fallback);
        }
        let mut name = &col[15..];
        if name.len() > 2 && name.as_bytes()[name.len() - 2] == b'_' {
            name = &name[..name.len() - 2];
        }
        if let Some(ck) = claim_key(name)? {
            let slot = out.slot(ck);
            if slot.is_none() {
                *slot = Some(t.text(c)?);
            }
        }
    }
    Ok(out)
}

/// parsers.azure_keyvault._diagnostics_key_props followed by _key_attributes.
fn diagnostics_key_attributes(t: &Tape<'_>, rec: u32, kind: Option<&str>) -> Fb<KeyAttrs> {
    let prefix = match kind {
        Some(KEY) => "keyProperties_",
        Some(SECRET) => "secretProperties_",
        Some(CERT) => "certificateProperties_",
        _ => return Ok(KeyAttrs::default()),
    };
    let col = |name: &str| {
        let mut k = String::with_capacity(prefix.len() + name.len());
        k.push_str(prefix);
        k.push_str(name);
        t.get(rec, &k).filter(|&x| t.kind(x) != K::Null) // `if v is not None`
    };
    let mut r = KeyAttrs::default();
    if let Some(spec) = t.str_(col("type_s"))? {
        let size = col("size_d").filter(|&x| t.truthy(x));
        let size = t.as_int(size)?;
        let curve = t.str_(col("curve_s").filter(|&x| t.truthy(x)))?;
        r.spec = Some(match (size.filter(|&v| v != 0), curve) {
            (Some(sz), _) => format!("{spec} {sz}"),
            (None, Some(cv)) => format!("{spec} {cv}"),
            (None, None) => spec.into_owned(),
        });
    }
    if let Some(en) = col("attributes_enabled_b") {
        r.enabled = match t.kind(en) {
            K::True => Some(true),
            K::False => Some(false),
            K::Str => {
                let v = t.text(en)?;
                if !v.is_ascii() {
                    return Err(Fallback);
                }
                match v.to_ascii_lowercase().as_str() {
                    "true" => Some(true),
                    "false" => Some(false),
                    _ => None,
                }
            }
            _ => None,
        };
    }
    r.expires = epoch_iso(t.as_int(col("attributes_exp_d"))?);
    Ok(r)
}

/// parsers.azure_keyvault._arm_operation (ASCII actions).
fn arm_operation(op: &str) -> Fb<(&'static str, Option<&'static str>)> {
    if !op.is_ascii() {
        return Err(Fallback);
    }
    let low = op.to_ascii_lowercase();
    let mut parts: Vec<&str> = low.split('/').skip(1).collect();
    if parts.last() == Some(&"action") {
        parts.pop();
    }
    if parts.is_empty() {
        return Ok(("admin_other", None));
    }
    let mut kind = None;
    if parts.len() >= 2 && matches!(parts[0], "vaults" | "managedhsms") {
        kind = arm_kind(parts[1]).map(|k| k.0);
    }
    let verb = parts[parts.len() - 1];
    if verb == "write" {
        if kind.is_some() && parts.len() == 3 {
            return Ok(("create", kind));
        }
        let n = parts.len();
        if (n >= 2 && parts[n - 2] == "accesspolicies") || n == 2 {
            return Ok(("update_policy", kind));
        }
        return Ok(("admin_other", kind));
    }
    if verb == "delete" && kind.is_none() && parts.len() > 2 {
        return Ok(("admin_other", None));
    }
    let operation = match verb {
        "read" | "readmetadata" => "describe",
        "delete" => "schedule_deletion",
        "purge" => "purge",
        "recover" => "cancel_deletion",
        "backup" => "backup",
        "restore" => "restore",
        "rotate" => "rotate",
        "encrypt" => "encrypt",
        "decrypt" => "decrypt",
        "wrap" | "wrapkey" => "wrap",
        "unwrap" | "unwrapkey" => "unwrap",
        "sign" => "sign",
        "verify" => "verify",
        "release" | "getsecret" => "export",
        "import" => "import",
        "create" | "setsecret" => "create",
        "update" => "update_policy",
        _ => "admin_other",
    };
    Ok((operation, kind))
}

/// AzureKeyVaultParser._emit -> the event's attribute dict, complete but for `event_id`,
/// and the bytes stable_id hashes for it (the vendor event id, else the record).
/// A requestUri that parsers.scrub.scrub_uri leaves unchanged, conservatively: no
/// userinfo ('@'), no fragment, no '.' in the path (token-shaped segments), and only
/// `api-version` query parameters. Anything else goes back to Python, which scrubs it
/// (one rule, in scrub.py; this is only the subset the fast path may keep verbatim).
fn request_uri_is_clean(uri: &str) -> bool {
    if uri.contains('@') || uri.contains('#') {
        return false;
    }
    let (base, query) = match uri.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (uri, None),
    };
    let path = match base.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map(|(_, p)| p).unwrap_or(""),
        None => base,
    };
    if path.contains('.') {
        return false;
    }
    match query {
        None => true,
        Some(q) => q.split('&').all(|pair| {
            let name = pair.split_once('=').map(|(n, _)| n).unwrap_or(pair);
            name.eq_ignore_ascii_case("api-version")
        }),
    }
}

fn emit<'py>(
    py: Python<'py>,
    t: &Tape<'_>,
    e: Emit<'_, '_>,
    path: &Bound<'py, PyAny>,
    offset: i64,
) -> Fb<(Bound<'py, PyDict>, Option<String>)> {
    let op = e.op;
    let time = e.time.ok_or(Fallback)?;
    if t.kind(time) != K::Str {
        return Err(Fallback);
    }
    let ts = normalize_iso(&t.text(time)?)?;
    let res = match &e.resource_id {
        Some(r) => Some(resource(py, r)?),
        None => None,
    };
    let mut ap_op: Option<&str> = None;
    let (mut operation, kind_hint, oref) = if e.arm {
        let (operation, kind_hint) = arm_operation(op)?;
        let oref = res.as_ref().and_then(|r| r.object.clone());
        ap_op = res.as_ref().and_then(|r| r.ap_op.as_deref());
        (operation, kind_hint, oref)
    } else {
        let (operation, kind_hint) = audit_operation(op)?;
        let mut oref = match &e.object_id {
            Some(o) => parse_object_uri(py, o)?,
            None => None,
        };
        if oref.as_ref().is_none_or(|r| r.kind.is_none()) {
            if let Some(ru) = &e.request_uri {
                if let Some(from_req) = parse_object_uri(py, ru)? {
                    if oref.is_none() || from_req.kind.is_some() {
                        oref = Some(from_req);
                    }
                }
            }
        }
        if oref.is_none() {
            if let Some(r) = &res {
                oref = r.object.clone();
            }
        }
        (operation, kind_hint, oref)
    };
    let ka = e.key_attrs;
    if ka.enabled == Some(false) && operation == "update_policy" && op.ends_with("Update") {
        operation = "disable";
    }
    let outcome_s = outcome(e.status, e.signature.as_deref(), e.result_type.as_deref())?;
    let (user_id, user_name, ptype) = principal(&e.claims, e.caller.as_deref());
    let tid: Option<&str> = e.claims.tid.as_deref().or(e.tenant.as_deref());
    let kind = oref.as_ref().and_then(|r| r.kind).or(kind_hint);
    let provider = match &oref {
        Some(r) => r.provider,
        None if res.as_ref().is_some_and(|r| r.hsm_path) => PROVIDER_HSM,
        None => PROVIDER_KV,
    };
    let ip = e.ip.as_deref();
    let source_ip = match ip {
        Some(v) if plain_ipv4(v) => Some(v.to_string()),
        Some(v) => clean_ip(v)?,
        None => None,
    };

    let op_py = cached_str(py, op);
    let extra = new_dict(py, 16)?;
    extra.set_item(intern!(py, "azure.keyvault.operation_name"), &op_py)?;
    if e.arm {
        extra.set_item(intern!(py, "azure.keyvault.category"), cached_str(py, &e.category))?;
    } else {
        extra.set_item(intern!(py, "azure.keyvault.category"), intern!(py, "AuditEvent"))?;
    }
    extra.set_item(intern!(py, "azure.keyvault.object_type"), static_str(py, kind.unwrap_or("vault")))?;
    if let Some(r) = &res {
        extra.set_item(intern!(py, "azure.keyvault.resource_id"), r.id.bind(py))?;
    }
    if let Some(s) = &e.signature {
        extra.set_item(intern!(py, "azure.keyvault.result_signature"), cached_str(py, s))?;
    }
    if let Some(s) = &e.result_type {
        extra.set_item(intern!(py, "azure.keyvault.result_type"), cached_str(py, s))?;
    }
    if let Some(s) = e.status {
        extra.set_item(intern!(py, "azure.keyvault.http_status_code"), s)?;
    }
    let tid_py = cached_opt(py, tid);
    if let Some(s) = &tid_py {
        extra.set_item(intern!(py, "azure.keyvault.tenant_id"), s)?;
    }
    let appid_py = cached_opt(py, e.claims.appid.as_deref());
    if let Some(s) = &appid_py {
        extra.set_item(intern!(py, "azure.keyvault.app_id"), s)?;
    }
    if let Some(s) = &e.claims.xms_mirid {
        extra.set_item(intern!(py, "azure.keyvault.managed_identity_resource_id"), cached_str(py, s))?;
    }
    if let Some(s) = &e.correlation {
        extra.set_item(intern!(py, "azure.keyvault.correlation_id"), &**s)?;
    }
    if let Some(d) = e.duration {
        extra.set_item(intern!(py, "azure.keyvault.duration_ms"), d)?;
    }
    if let Some(s) = &e.request_uri {
        if !request_uri_is_clean(s) {
            return Err(Fallback); // parsers/scrub.py scrub_uri redacts it in Python
        }
        extra.set_item(intern!(py, "azure.keyvault.request_uri"), cached_str(py, s))?;
    }
    if let Some(v) = ka.enabled {
        extra.set_item(intern!(py, "azure.keyvault.enabled"), v)?;
    }
    if let Some(ap) = ap_op {
        extra.set_item(intern!(py, "azure.keyvault.access_policy_operation"), ap)?;
    }

    let d = template_copy(py)?;
    if outcome_s == "failure" {
        let code = match e.status {
            Some(s) => Some(s.to_string()),
            None => e.signature.as_deref().or(e.result_type.as_deref()).map(str::to_string),
        };
        d.set_item(intern!(py, "error_code"), code)?;
        d.set_item(intern!(py, "error_message"), e.description.as_deref())?;
    }
    if let Some(o) = &oref {
        set_some(&d, intern!(py, "key_uid"), &o.uid)?;
        set_some(&d, intern!(py, "key_vault"), &o.vault)?;
        set_some(&d, intern!(py, "key_name"), &o.name)?;
        set_some(&d, intern!(py, "key_version"), &o.version)?;
    }
    if provider != PROVIDER_KV {
        d.set_item(intern!(py, "key_provider"), static_str(py, provider))?; // template: KV
    }
    if let Some(k) = kind {
        d.set_item(intern!(py, "key_kind"), static_str(py, k))?;
    }
    // key_account / cloud_account_id: the record's subscription, else the resource id's.
    match &e.subscription {
        Some(s) => {
            let g = cached_str(py, &guid(s));
            d.set_item(intern!(py, "key_account"), &g)?;
            d.set_item(intern!(py, "cloud_account_id"), &g)?;
        }
        None => {
            if let Some(r) = &res {
                set_some(&d, intern!(py, "key_account"), &r.subscription)?;
                set_some(&d, intern!(py, "cloud_account_id"), &r.subscription)?;
            }
        }
    }
    // key_region / cloud_region: `location`, else the resource id's locations/<x>.
    match &e.location {
        Some(l) => {
            let l = cached_str(py, l);
            d.set_item(intern!(py, "key_region"), &l)?;
            d.set_item(intern!(py, "cloud_region"), &l)?;
        }
        None => {
            if let Some(r) = &res {
                set_some(&d, intern!(py, "key_region"), &r.location)?;
                set_some(&d, intern!(py, "cloud_region"), &r.location)?;
            }
        }
    }
    if ka.spec.is_some() {
        d.set_item(intern!(py, "key_spec"), ka.spec)?;
    }
    if ka.usage.is_some() {
        d.set_item(intern!(py, "key_usage"), ka.usage)?;
    }
    if op == "KeyImport" {
        d.set_item(intern!(py, "key_origin"), intern!(py, "EXTERNAL"))?;
    }
    if ka.expires.is_some() {
        d.set_item(intern!(py, "key_expires_at"), ka.expires)?;
    }
    if let Some(u) = user_id {
        d.set_item(intern!(py, "user_id"), cached_str(py, u))?;
    }
    if let Some(u) = &user_name {
        match &appid_py {
            Some(a) if e.claims.appid.as_deref() == Some(&**u) => {
                d.set_item(intern!(py, "user_name"), a)?;
            }
            _ => d.set_item(intern!(py, "user_name"), cached_str(py, u))?,
        }
    }
    if let Some(p) = ptype {
        d.set_item(intern!(py, "principal_type"), static_str(py, p))?;
    }
    if let Some(tp) = &tid_py {
        d.set_item(intern!(py, "principal_account"), tp)?;
    }
    if let Some(ip) = ip {
        let ip_py = cached_str(py, ip);
        if let Some(sip) = &source_ip {
            if sip == ip {
                d.set_item(intern!(py, "source_ip"), &ip_py)?;
            } else {
                d.set_item(intern!(py, "source_ip"), cached_str(py, sip))?;
            }
        }
        d.set_item(intern!(py, "source_address"), ip_py)?;
    }
    if let Some(c) = &e.client {
        d.set_item(intern!(py, "user_agent"), cached_str(py, c))?;
    }
    if let Some(r) = e.request_id.as_deref().or(e.vendor_id.as_deref()) {
        d.set_item(intern!(py, "request_id"), r)?;
    }
    d.set_item(intern!(py, "extra"), extra)?;
    d.set_item(intern!(py, "timestamp"), ts)?;
    d.set_item(intern!(py, "action"), &op_py)?;
    d.set_item(intern!(py, "outcome"), static_str(py, outcome_s))?;
    fill_derived(py, &d, operation, path, offset)?;
    Ok((d, e.vendor_id.map(|v| v.into_owned())))
}

/// A canonical dotted quad ('203.0.113.9'): clean_ip returns it unchanged.
fn plain_ipv4(v: &str) -> bool {
    let b = v.as_bytes();
    if b.len() < 7 || b.len() > 15 {
        return false;
    }
    let mut parts = 0;
    let mut val = 0u32;
    let mut len = 0;
    let mut first = 0u8;
    for &c in b.iter().chain(std::iter::once(&b'.')) {
        if c == b'.' {
            if len == 0 || val > 255 || (len > 1 && first == b'0') {
                return false;
            }
            parts += 1;
            val = 0;
            len = 0;
        } else if c.is_ascii_digit() {
            if len == 0 {
                first = c;
            }
            len += 1;
            if len > 3 {
                return false;
            }
            val = val * 10 + (c - b'0') as u32;
        } else {
            return false;
        }
    }
    parts == 4
}

fn set_some(d: &Bound<'_, PyDict>, key: &Bound<'_, PyString>, v: &Option<Py<PyString>>) -> Fb<()> {
    if let Some(v) = v {
        d.set_item(key, v.bind(d.py()))?;
    }
    Ok(())
}

/// One record -> (event dict without event_id, the bytes its id hashes).
fn record<'py, 'l>(
    py: Python<'py>,
    line: &'l [u8],
    path: &Bound<'py, PyAny>,
    offset: i64,
) -> Fb<(Bound<'py, PyDict>, Cow<'l, [u8]>)> {
    let (t, raw) = scan(line)?;
    if t.kind(0) != K::Obj {
        return Err(Fallback);
    }
    let top = Top::read(&t, 0);
    if top.records.is_some() {
        return Err(Fallback); // a batch line (or a record with a `records` member): Python
    }
    let op_node = top.operation_name.filter(|&o| t.kind(o) != K::Null);
    let op = match op_node {
        Some(o) if t.kind(o) == K::Str => t.text(o)?,
        Some(_) => return Err(Fallback), // Activity Log REST shape / bad type: Python
        None => {
            // Log Analytics row (OperationName); AzureActivity rows and others: Python.
            if t.get(0, "OperationNameValue").is_some() {
                return Err(Fallback);
            }
            let o = t.get(0, "OperationName").ok_or(Fallback)?;
            if t.kind(o) != K::Str {
                return Err(Fallback);
            }
            t.text(o)?
        }
    };
    if op.is_empty() {
        return Err(Fallback); // missing_field: Python quarantines
    }
    let fields = if op_node.is_none() {
        log_analytics_fields(&t, &op)?
    } else if op.contains('/') {
        activity_fields(&t, &top, &op)?
    } else {
        audit_fields(&t, &top, &op)?
    };
    let (d, vendor_id) = emit(py, &t, fields, path, offset)?;
    Ok(match vendor_id {
        Some(v) => (d, Cow::Owned(v.into_bytes())), // stable_id(DATASET, eventDataId)
        None => (d, raw),                           // stable_id(DATASET, orjson.dumps(rec))
    })
}

/// One NDJSON line of the Key Vault family -> KeyEvent, or None (the Python parser decides).
#[pyfunction]
fn keyvault_line<'py>(py: Python<'py>, line: &[u8], path: Bound<'py, PyAny>, offset: i64) -> Option<Py<PyAny>> {
    let (d, raw) = record(py, line, &path, offset).ok()?;
    d.set_item(intern!(py, "event_id"), stable_id(&[DATASET.as_bytes(), &raw])).ok()?;
    make_event(py, &d).ok()
}

// ====================================================================== event objects

/// Per-operation Python objects: (operation, operation_class, category list, type list).
struct OpInfo {
    op: Py<PyString>,
    class: Py<PyAny>,
    category: Py<PyList>,
    typ: Py<PyList>,
}

const OPERATIONS: [&str; 21] = [
    "login", "describe", "list", "update_policy", "schedule_deletion", "cancel_deletion",
    "purge", "create", "import", "rotate", "backup", "restore", "encrypt", "decrypt", "wrap",
    "unwrap", "sign", "verify", "export", "admin_other", "disable",
];

struct Statics {
    template: Py<PyDict>,
    ops: Vec<OpInfo>,
}

static STATICS: PyOnceLock<Statics> = PyOnceLock::new();

fn statics(py: Python<'_>) -> Fb<&Statics> {
    STATICS.get_or_try_init(py, || -> Fb<Statics> {
        let ctx = CTX.get(py).ok_or(Fallback)?;
        let none = py.None();
        // Same keys, same order as parsers.schema.new_event called by AzureKeyVaultParser._emit.
        let t = PyDict::new(py);
        for k in [
            "error_code", "error_message", "key_uid", "key_provider", "key_kind", "key_account",
            "key_region", "key_vault", "key_name", "key_version", "key_spec", "key_usage",
            "key_origin", "key_expires_at", "user_id", "user_name", "principal_type",
            "principal_account", "source_ip", "source_address", "user_agent",
        ] {
            t.set_item(PyString::intern(py, k), &none)?;
        }
        t.set_item(PyString::intern(py, "key_provider"), PyString::intern(py, PROVIDER_KV))?;
        t.set_item(PyString::intern(py, "cloud_provider"), PyString::intern(py, "azure"))?;
        for k in ["cloud_account_id", "cloud_region", "request_id", "original", "extra",
                  "timestamp", "event_id"] {
            t.set_item(PyString::intern(py, k), &none)?;
        }
        t.set_item(PyString::intern(py, "dataset"), PyString::intern(py, DATASET))?;
        t.set_item(PyString::intern(py, "provider"), PyString::intern(py, "Microsoft.KeyVault"))?;
        for k in ["action", "outcome", "operation", "operation_class", "log_file_path",
                  "log_offset", "category", "type"] {
            t.set_item(PyString::intern(py, k), &none)?;
        }
        let mut ops = Vec::with_capacity(OPERATIONS.len());
        for name in OPERATIONS {
            let op = PyString::intern(py, name);
            let class = match ctx.operation_class.bind(py).get_item(&op)? {
                Some(c) => c,
                None => PyString::intern(py, "other").into_any(),
            };
            let cat = ctx.ecs_category.bind(py).get_item(&class)?.ok_or(Fallback)?;
            let typ = match ctx.ecs_type.bind(py).get_item(&op)? {
                Some(t) => t,
                None => ctx.info.bind(py).clone(),
            };
            ops.push(OpInfo {
                op: op.unbind(),
                class: class.unbind(),
                category: cat.cast_into::<PyList>().map_err(|_| Fallback)?.unbind(),
                typ: typ.cast_into::<PyList>().map_err(|_| Fallback)?.unbind(),
            });
        }
        Ok(Statics { template: t.unbind(), ops })
    })
}

/// A fresh copy of the event-dict template (every key _emit passes, in its order).
fn template_copy(py: Python<'_>) -> Fb<Bound<'_, PyDict>> {
    let st = statics(py)?;
    unsafe {
        let p = ffi::PyDict_Copy(st.template.as_ptr());
        let b = Bound::from_owned_ptr_or_err(py, p)?;
        Ok(b.cast_into_unchecked::<PyDict>())
    }
}

fn new_dict(py: Python<'_>, size: isize) -> Fb<Bound<'_, PyDict>> {
    unsafe {
        let p = crate::common::_PyDict_NewPresized(size);
        let b = Bound::from_owned_ptr_or_err(py, p)?;
        Ok(b.cast_into_unchecked::<PyDict>())
    }
}

fn list_copy<'py>(py: Python<'py>, l: &Py<PyList>) -> Fb<Bound<'py, PyAny>> {
    unsafe {
        let p = ffi::PyList_GetSlice(l.as_ptr(), 0, isize::MAX);
        Ok(Bound::from_owned_ptr_or_err(py, p)?)
    }
}

/// Fill the fields parsers.schema.new_event derives or takes last.
fn fill_derived<'py>(
    py: Python<'py>,
    d: &Bound<'py, PyDict>,
    operation: &str,
    path: &Bound<'py, PyAny>,
    offset: i64,
) -> Fb<()> {
    let st = statics(py)?;
    let idx = OPERATIONS.iter().position(|&o| o == operation).ok_or(Fallback)?;
    let info = &st.ops[idx];
    d.set_item(intern!(py, "operation"), info.op.bind(py))?;
    d.set_item(intern!(py, "operation_class"), info.class.bind(py))?;
    d.set_item(intern!(py, "log_file_path"), path)?;
    d.set_item(intern!(py, "log_offset"), offset)?;
    d.set_item(intern!(py, "category"), list_copy(py, &info.category)?)?;
    d.set_item(intern!(py, "type"), list_copy(py, &info.typ)?)?;
    Ok(())
}

/// object.__new__(KeyEvent) with `d` as its __dict__ (as new_event builds it).
fn make_event(py: Python<'_>, d: &Bound<'_, PyDict>) -> Fb<Py<PyAny>> {
    let ctx = CTX.get(py).ok_or(Fallback)?;
    unsafe {
        let tp = ctx.key_event.as_ptr() as *mut ffi::PyTypeObject;
        let base = std::ptr::addr_of_mut!(ffi::PyBaseObject_Type);
        let new = (*base).tp_new.ok_or(Fallback)?;
        let args = PyTuple::empty(py);
        let obj = Bound::from_owned_ptr_or_err(py, new(tp, args.as_ptr(), std::ptr::null_mut()))?;
        if ffi::PyObject_GenericSetDict(obj.as_ptr(), d.as_ptr(), std::ptr::null_mut()) != 0 {
            let _ = PyErr::take(py);
            return Err(Fallback);
        }
        Ok(obj.unbind())
    }
}

/// Interned Python strings for the constant values this module emits.
fn static_str<'py>(py: Python<'py>, s: &str) -> Bound<'py, PyString> {
    match s {
        "key" => intern!(py, "key").clone(),
        "secret" => intern!(py, "secret").clone(),
        "certificate" => intern!(py, "certificate").clone(),
        "vault" => intern!(py, "vault").clone(),
        "success" => intern!(py, "success").clone(),
        "failure" => intern!(py, "failure").clone(),
        "unknown" => intern!(py, "unknown").clone(),
        "user" => intern!(py, "user").clone(),
        "service_principal" => intern!(py, "service_principal").clone(),
        "managed_identity" => intern!(py, "managed_identity").clone(),
        "azure_keyvault" => intern!(py, "azure_keyvault").clone(),
        "azure_managed_hsm" => intern!(py, "azure_managed_hsm").clone(),
        other => PyString::new(py, other),
    }
}

/// All complete lines of `buf[..end]` (end just after a newline; `base` = file offset of
/// buf[0]), framed exactly as parsers.framing.iter_lines frames them. Returns
/// (outcomes, fallbacks): KeyEvents in line order, and where the Python parser must take
/// a line, a tuple (offset, line, overlong) in its place (overlong lines carry only their
/// first 512 bytes). Blank lines are skipped; one trailing CR is dropped.
#[pyfunction]
fn keyvault_lines<'py>(
    py: Python<'py>,
    buf: &[u8],
    end: usize,
    path: Bound<'py, PyAny>,
    base: i64,
    max_line: usize,
) -> PyResult<(Bound<'py, PyList>, usize)> {
    let mut batch = Batch::new(end);
    let end = end.min(buf.len());
    let mut pos = 0usize;
    while pos < end {
        let nl = match memchr::memchr(b'\n', &buf[pos..end]) {
            Some(i) => pos + i,
            None => end,
        };
        let mut line = &buf[pos..nl];
        let off = base + pos as i64;
        pos = nl + 1;
        if line.len() > max_line {
            let head = &line[..line.len().min(512)];
            batch.other((off, PyBytes::new(py, head), true).into_pyobject(py)?.into_any());
            continue;
        }
        if line.iter().all(|&c| matches!(c, b' ' | b'\t' | b'\r' | 0x0b | 0x0c)) {
            continue; // blank
        }
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        let ev = if off == 0 && line.starts_with(b"\xef\xbb\xbf") {
            Err(Fallback)
        } else {
            record(py, line, &path, off)
        };
        match ev {
            Ok((d, raw)) => {
                let l0 = line.as_ptr() as usize - buf.as_ptr() as usize;
                batch.event(d, &raw, Some((off, l0..l0 + line.len())));
            }
            Err(_) => batch.other((off, PyBytes::new(py, line), false).into_pyobject(py)?.into_any()),
        }
    }
    batch.finish(py, buf)
}

/// A whole-file document (`{"records":[...]}`, a JSON array of records, or one record):
/// (one entry per record in order, each a KeyEvent or None where the Python parser must
/// take the record, number of Nones), or None when the document itself is not one this
/// path handles (invalid JSON, a BOM, another shape).
#[pyfunction]
fn keyvault_document<'py>(
    py: Python<'py>,
    data: &[u8],
    path: Bound<'py, PyAny>,
) -> Option<(Bound<'py, PyList>, usize)> {
    let first = data.iter().position(|&c| !is_ws(c))?;
    if data[first] == 0xef {
        return None; // BOM
    }
    let (t, _, _) = Scanner::<false>::new(data).run().ok()?;
    let elements: Vec<u32> = match t.kind(0) {
        K::Obj => match t.get(0, "records") {
            Some(r) if t.kind(r) == K::Arr => t.children(r).collect(),
            _ => vec![0],
        },
        K::Arr => t.children(0).collect(),
        _ => return None,
    };
    let mut batch = Batch::new(data.len());
    for (index, e) in elements.into_iter().enumerate() {
        let n = t.node(e);
        let ev = if n.k == K::Obj {
            record(py, &data[n.a as usize..n.b as usize], &path, index as i64)
        } else {
            Err(Fallback)
        };
        match ev {
            Ok((d, raw)) => batch.event(d, &raw, None),
            Err(_) => batch.other(py.None().into_bound(py)),
        }
    }
    batch.finish(py, data).ok()
}

/// Events of one call, in order, whose ids are hashed together at the end.
/// An event's fallback if it cannot be finished: the line's (offset, range in the input)
/// for `keyvault_lines`, None (Python takes the record) for documents.
type Retry = Option<(i64, std::ops::Range<usize>)>;

/// An event dict waiting for its id: (dict, range of its hashed bytes in `ids`, retry).
type Pending<'py> = (Bound<'py, PyDict>, std::ops::Range<usize>, Retry);

struct Batch<'py> {
    items: Vec<Result<Pending<'py>, Bound<'py, PyAny>>>,
    ids: Vec<u8>, // per event 0x1F dataset 0x1F raw: stable_id's input
    fallbacks: usize,
}

impl<'py> Batch<'py> {
    fn new(bytes: usize) -> Self {
        Batch { items: Vec::new(), ids: Vec::with_capacity(bytes + bytes / 8 + 64), fallbacks: 0 }
    }

    fn event(&mut self, d: Bound<'py, PyDict>, raw: &[u8], retry: Retry) {
        let start = self.ids.len();
        self.ids.push(0x1f);
        self.ids.extend_from_slice(DATASET.as_bytes());
        self.ids.push(0x1f);
        self.ids.extend_from_slice(raw);
        self.items.push(Ok((d, start..self.ids.len(), retry)));
    }

    fn other(&mut self, o: Bound<'py, PyAny>) {
        self.items.push(Err(o));
        self.fallbacks += 1;
    }

    /// event.id = stable_id(DATASET, raw) for all events at once (BLAKE2b-128 in SIMD
    /// lanes), then the KeyEvents. An event that cannot be built becomes a fallback.
    fn finish(self, py: Python<'py>, input: &[u8]) -> PyResult<(Bound<'py, PyList>, usize)> {
        let mut params = blake2b_simd::Params::new();
        params.hash_length(16);
        let mut jobs: Vec<blake2b_simd::many::HashManyJob<'_>> = self
            .items
            .iter()
            .filter_map(|it| match it {
                Ok((_, r, _)) => Some(blake2b_simd::many::HashManyJob::new(&params, &self.ids[r.clone()])),
                Err(_) => None,
            })
            .collect();
        blake2b_simd::many::hash_many(jobs.iter_mut());
        let mut hashes = jobs.iter().map(|j| j.to_hash());
        let mut fallbacks = self.fallbacks;
        let mut out: Vec<Py<PyAny>> = Vec::with_capacity(self.items.len());
        for it in self.items {
            match it {
                Ok((d, _, retry)) => {
                    let ev = match hashes.next() {
                        Some(h) => d
                            .set_item(intern!(py, "event_id"), h.to_hex().as_str())
                            .map_err(|_| Fallback)
                            .and_then(|_| make_event(py, &d)),
                        None => Err(Fallback),
                    };
                    match ev {
                        Ok(ev) => out.push(ev),
                        Err(_) => {
                            // Not expected (allocation failure): let Python parse it.
                            let _ = PyErr::take(py);
                            out.push(match retry {
                                Some((off, r)) => {
                                    (off, PyBytes::new(py, &input[r]), false).into_pyobject(py)?.into_any().unbind()
                                }
                                None => py.None(),
                            });
                            fallbacks += 1;
                        }
                    }
                }
                Err(o) => out.push(o.unbind()),
            }
        }
        Ok((PyList::new(py, out)?, fallbacks))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(keyvault_line, m)?)?;
    m.add_function(wrap_pyfunction!(keyvault_lines, m)?)?;
    m.add_function(wrap_pyfunction!(keyvault_document, m)?)?;
    m.add_function(wrap_pyfunction!(keyvault_canon, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canon_compacts() {
        let (_, out) = scan(br#" { "a" : [1, -0, 2.50, "x\/y\u00e9"] } "#).unwrap();
        assert_eq!(&*out, "{\"a\":[1,0,2.5,\"x/y\u{e9}\"]}".as_bytes());
        assert!(Scanner::<true>::new(br#"{"a":1,"a":2}"#).run().is_err());
    }

    #[test]
    fn epoch() {
        assert_eq!(epoch_iso(Some(86400 * 365)).unwrap(), "1971-01-01T00:00:00.000Z");
        assert_eq!(epoch_iso(Some(1_700_000_000)).unwrap(), "2023-11-14T22:13:20.000Z");
    }
}


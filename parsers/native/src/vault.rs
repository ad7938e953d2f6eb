//! Fast path for the HashiCorp Vault / OpenBao audit parser (parsers/vault.py is the
//! reference implementation).
//!
//! `VaultStream(read, chunk, max_line, path, pending, out, cluster, fallback)` is
//! `VaultAuditParser.parse` for one stream minus the end-of-file flush: an iterator of
//! outcomes. It frames lines exactly like parsers.framing.iter_lines and handles each
//! line like `VaultAuditParser._record` would, on the parser's own `pending` table
//! (request id -> `_Pending`) and `out` list; a line it is not certain about goes to
//! `fallback` (the parser's `_record`) untouched. The pairing state therefore lives in one
//! place, the Python dict, whichever side handles a line:
//!
//! * a request line is stored as `_Pending(offset, None, timestamp, raw, host, plan)`; the
//!   Python side re-reads `raw` when it needs the record (a request never answered, or a
//!   response it handles itself), and so does this side for the request's `error`.
//! * a response line pops its request (if any), appends `Skipped("paired_request")` and
//!   the event to `out`, in that order, as Python does.
//! * a request routed to a skip reason appends its `Skipped` at once.
//! * over-long lines, duplicate request ids, a full table, KMIP records, records without a
//!   request id, non-ASCII syslog frames, non-UTC timestamps and IPv4-mapped / scoped IPv6
//!   peers all go to Python.
//!
//! Routing is not re-implemented: the (pure, cached) Python `_plan` is called once per
//! distinct (path, operation, mount_point, mount_type) and its result cached here.
//!
//! JSON: a small strict parser (RFC 8259; anything orjson might read differently, e.g.
//! lone surrogates, huge numbers, deep nesting, falls back) into a flat DOM of spans that
//! keeps only the members the parser reads. Duplicate keys resolve to the last one, as in
//! orjson.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::common::{clean_ip, normalize_iso, stable_id, Event, Fallback, Fb, CTX};

const DATASET: &str = "hashicorp_vault.audit";

const DYN_LOGIN: i64 = 1;
const DYN_TOKEN: i64 = 2;
const DYN_TRANSIT: i64 = 4;
const DYN_KEYCFG: i64 = 8;
const DYN_KV: i64 = 16;

// ----------------------------------------------------------------------------- JSON

/// A JSON value as far as the Python parser distinguishes it (isinstance checks).
/// Strings are spans of the line (or indexes into `Doc::owned` when they had escapes).
#[derive(Clone, Copy)]
enum V {
    Null,
    Bool(bool),
    Int(i64),
    /// An int outside i64 (Python int): never interpreted here.
    BigInt,
    Float,
    Str(S),
    /// Elements are `Doc::items[start..start + len]`.
    Arr(u32, u32),
    /// Members of interest are `Doc::items[start..start + len]`; the third number counts
    /// all members (the object's truthiness).
    Obj(u32, u32, u32),
    /// A container inside an array (only counted, never looked into).
    Opaque,
}

#[derive(Clone, Copy)]
enum S {
    Raw(u32, u32),
    Owned(u32),
}

/// Member names the parser ever reads; members with other names are validated and
/// skipped without being stored.
fn wanted(key: &[u8]) -> bool {
    // Cheap pre-filter on (length, first byte) before the exact comparison.
    match (key.len(), key.first()) {
        (
            2..=22,
            Some(
                b'a' | b'b' | b'd' | b'e' | b'i' | b'k' | b'm' | b'n' | b'o' | b'p' | b'r' | b't'
                | b'v',
            ),
        ) => {}
        _ => return false,
    }
    matches!(
        key,
        b"type"
            | b"time"
            | b"request"
            | b"auth"
            | b"response"
            | b"error"
            | b"id"
            | b"operation"
            | b"path"
            | b"mount_point"
            | b"mount_type"
            | b"namespace"
            | b"data"
            | b"remote_address"
            | b"key_version"
            | b"batch_input"
            | b"exportable"
            | b"deletion_allowed"
            | b"allow_plaintext_backup"
            | b"derived"
            | b"min_decryption_version"
            | b"min_encryption_version"
            | b"auto_rotate_period"
            | b"no_parent"
            | b"versions"
            | b"metadata"
            | b"version"
            | b"accessor"
            | b"entity_id"
            | b"display_name"
            | b"token_type"
            | b"policies"
            | b"token_policies"
    )
}

struct Doc<'a> {
    s: &'a str,
    owned: Vec<String>,
    /// (member name, value) of stored object members / array elements.
    items: Vec<(S, V)>,
}

impl<'a> Doc<'a> {
    fn text(&self, s: S) -> &str {
        match s {
            S::Raw(a, b) => &self.s[a as usize..b as usize],
            S::Owned(i) => &self.owned[i as usize],
        }
    }

    /// dict.get(key) of an object (None for a non-object); the last duplicate wins.
    fn get(&self, v: Option<&V>, key: &str) -> Option<&V> {
        match v {
            Some(V::Obj(s, n, _)) => self.items[*s as usize..(*s + *n) as usize]
                .iter()
                .rev()
                .find(|(k, _)| self.text(*k) == key)
                .map(|(_, v)| v),
            _ => None,
        }
    }

    fn elems(&self, v: &V) -> &[(S, V)] {
        match v {
            V::Arr(s, n) => &self.items[*s as usize..(*s + *n) as usize],
            _ => &[],
        }
    }

    /// isinstance(v, str) (any, also empty).
    fn any_str(&self, v: Option<&V>) -> Option<&str> {
        match v {
            Some(V::Str(s)) => Some(self.text(*s)),
            _ => None,
        }
    }

    /// parsers.vault._s: a non-empty str, else None.
    fn js(&self, v: Option<&V>) -> Option<&str> {
        self.any_str(v).filter(|s| !s.is_empty())
    }

    /// parsers.vault._str_list.
    fn str_list(&self, v: Option<&V>) -> Vec<&str> {
        match v {
            Some(a @ V::Arr(..)) => self
                .elems(a)
                .iter()
                .filter_map(|(_, x)| match x {
                    V::Str(s) => Some(self.text(*s)),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// _d(): Some only for a dict.
fn dict(v: Option<&V>) -> Option<&V> {
    v.filter(|x| matches!(x, V::Obj(..)))
}

/// A dict with at least one key (Python truthiness of `_d(x)`).
fn nonempty_dict(v: Option<&V>) -> Option<&V> {
    v.filter(|x| matches!(x, V::Obj(_, _, n) if *n > 0))
}

/// isinstance(v, int) and not isinstance(v, bool) -> Some(v); an int beyond i64 falls back.
fn py_int(v: Option<&V>) -> Fb<Option<i64>> {
    match v {
        Some(V::Int(i)) => Ok(Some(*i)),
        Some(V::BigInt) => Err(Fallback),
        _ => Ok(None),
    }
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    depth: u32,
    owned: Vec<String>,
    stack: Vec<(S, V)>,
    items: Vec<(S, V)>,
}

/// Bytes that end the plain run of a JSON string: quote, backslash, control characters.
static SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

fn hex4(b: &[u8], i: usize) -> Fb<u32> {
    let h = b.get(i..i + 4).ok_or(Fallback)?;
    let mut v = 0u32;
    for &c in h {
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

impl<'a> Parser<'a> {
    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if c == b' ' || c == b'\n' || c == b'\t' || c == b'\r' {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    #[inline(always)]
    /// A string (after its opening quote): its span, or its decoded text when it has
    /// escapes (`keep`: stored in `owned`, else only validated).
    fn string(&mut self, keep: bool) -> Fb<S> {
        let b = self.b;
        let start = self.i;
        let mut j = start;
        while j < b.len() && !SPECIAL[b[j] as usize] {
            j += 1;
        }
        if j >= b.len() || b[j] < 0x20 {
            return Err(Fallback);
        }
        if b[j] == b'"' {
            self.i = j + 1;
            return Ok(S::Raw(start as u32, j as u32));
        }
        let mut i = j;
        let mut out = String::with_capacity(j - start + 16);
        out.push_str(&self.s[start..j]);
        loop {
            let c = *b.get(i).ok_or(Fallback)?;
            match c {
                b'"' => {
                    self.i = i + 1;
                    if !keep {
                        return Ok(S::Raw(0, 0));
                    }
                    self.owned.push(out);
                    return Ok(S::Owned((self.owned.len() - 1) as u32));
                }
                b'\\' => {
                    let e = *b.get(i + 1).ok_or(Fallback)?;
                    i += 2;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\x08'),
                        b'f' => out.push('\x0c'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = hex4(b, i)?;
                            i += 4;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if b.get(i) != Some(&b'\\') || b.get(i + 1) != Some(&b'u') {
                                    return Err(Fallback);
                                }
                                let lo = hex4(b, i + 2)?;
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
                            out.push(char::from_u32(cp).ok_or(Fallback)?);
                        }
                        _ => return Err(Fallback),
                    }
                }
                c if c < 0x20 => return Err(Fallback),
                _ => {
                    let st = i;
                    while i < b.len() && b[i] != b'"' && b[i] != b'\\' && b[i] >= 0x20 {
                        i += 1;
                    }
                    out.push_str(&self.s[st..i]);
                }
            }
        }
    }

    fn digits(&mut self) -> usize {
        let st = self.i;
        while matches!(self.b.get(self.i), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - st
    }

    fn number(&mut self) -> Fb<V> {
        let st = self.i;
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(Fallback),
        }
        let mut float = false;
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(Fallback);
            }
            float = true;
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(Fallback);
            }
            float = true;
        }
        let text = &self.s[st..self.i];
        if text.len() > 64 {
            return Err(Fallback); // orjson may read it as inf and reject the line
        }
        if float {
            let f: f64 = text.parse().map_err(|_| Fallback)?;
            return if f.is_finite() {
                Ok(V::Float)
            } else {
                Err(Fallback)
            };
        }
        if let Ok(v) = text.parse::<i64>() {
            return Ok(V::Int(v));
        }
        if text.parse::<u64>().is_ok() {
            return Ok(V::BigInt);
        }
        Ok(V::Float) // orjson reads integers beyond 64 bits as float
    }

    fn lit(&mut self, word: &[u8], v: V) -> Fb<V> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(Fallback)
        }
    }

    /// One value. `mode`: 2 = store it (objects keep their wanted members), 1 = an array
    /// element (containers become Opaque), 0 = validate only.
    fn value(&mut self, mode: u8) -> Fb<V> {
        self.ws();
        match *self.b.get(self.i).ok_or(Fallback)? {
            b'"' => {
                self.i += 1;
                Ok(V::Str(self.string(mode != 0)?))
            }
            b'{' => {
                self.i += 1;
                self.depth += 1;
                if self.depth > 64 {
                    return Err(Fallback);
                }
                let store = mode == 2;
                let mark = self.stack.len();
                let mut nkeys = 0u32;
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        if self.b.get(self.i) != Some(&b'"') {
                            return Err(Fallback);
                        }
                        self.i += 1;
                        let k = self.string(store)?;
                        nkeys += 1;
                        self.ws();
                        if self.b.get(self.i) != Some(&b':') {
                            return Err(Fallback);
                        }
                        self.i += 1;
                        let keep = store
                            && match k {
                                S::Raw(a, b) => wanted(&self.b[a as usize..b as usize]),
                                S::Owned(i) => wanted(self.owned[i as usize].as_bytes()),
                            };
                        if keep {
                            let v = self.value(2)?;
                            self.stack.push((k, v));
                        } else {
                            self.value(0)?;
                        }
                        self.ws();
                        match self.b.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                break;
                            }
                            _ => return Err(Fallback),
                        }
                    }
                }
                self.depth -= 1;
                if !store {
                    return Ok(V::Opaque);
                }
                let start = self.items.len() as u32;
                let n = (self.stack.len() - mark) as u32;
                self.items.extend(self.stack.drain(mark..));
                Ok(V::Obj(start, n, nkeys))
            }
            b'[' => {
                self.i += 1;
                self.depth += 1;
                if self.depth > 64 {
                    return Err(Fallback);
                }
                let store = mode == 2;
                let mark = self.stack.len();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                } else {
                    loop {
                        let v = self.value(if store { 1 } else { 0 })?;
                        if store {
                            self.stack.push((S::Raw(0, 0), v));
                        }
                        self.ws();
                        match self.b.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                break;
                            }
                            _ => return Err(Fallback),
                        }
                    }
                }
                self.depth -= 1;
                if !store {
                    return Ok(V::Opaque);
                }
                let start = self.items.len() as u32;
                let n = (self.stack.len() - mark) as u32;
                self.items.extend(self.stack.drain(mark..));
                Ok(V::Arr(start, n))
            }
            b't' => self.lit(b"true", V::Bool(true)),
            b'f' => self.lit(b"false", V::Bool(false)),
            b'n' => self.lit(b"null", V::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Fallback),
        }
    }
}

/// Parse one whole line (an object, nothing but JSON whitespace after it).
fn parse_doc(s: &str) -> Fb<(Doc<'_>, V)> {
    let mut p = Parser {
        s,
        b: s.as_bytes(),
        i: 0,
        depth: 0,
        owned: Vec::new(),
        stack: Vec::with_capacity(16),
        items: Vec::with_capacity(48),
    };
    let root = p.value(2)?;
    p.ws();
    if p.i != p.b.len() || !matches!(root, V::Obj(..)) {
        return Err(Fallback);
    }
    Ok((
        Doc {
            s,
            owned: p.owned,
            items: p.items,
        },
        root,
    ))
}

// ------------------------------------------------------------------------- contexts

/// FxHash (rustc's): the cache keys are short and trusted enough; SipHash costs more than
/// the lookup.
#[derive(Default)]
struct Fx(u64);

impl std::hash::Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
            h = (h.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
        for &b in chunks.remainder() {
            h = (h.rotate_left(5) ^ b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
        self.0 = h;
    }
}

type FxMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fx>>;

/// Python objects handed over once by parsers/vault.py (`vault_init`).
struct VCtx {
    plan_fn: Py<PyAny>,
    pending_cls: Py<PyAny>,
    max_pending: usize,
    /// Requests longer than this go to Python, which keeps the table's byte bound.
    large_request: usize,
    /// `object.__new__` and its argument tuples `(Skipped,)`, `(KeyEvent,)`.
    object_new: Py<PyAny>,
    skipped_args: Py<PyTuple>,
    key_event_args: Py<PyTuple>,
}

static VCTX: Mutex<Option<Arc<VCtx>>> = Mutex::new(None);

#[pyfunction]
fn vault_init(
    py: Python<'_>,
    plan_fn: Bound<'_, PyAny>,
    skipped: Bound<'_, PyAny>,
    pending_cls: Bound<'_, PyAny>,
    max_pending: usize,
    large_request: usize,
) -> PyResult<()> {
    let builtins = py.import("builtins")?;
    let object_new = builtins.getattr("object")?.getattr("__new__")?;
    let common = CTX
        .get(py)
        .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("init() first"))?;
    let tuple_type = builtins.getattr("tuple")?;
    let ok = pending_cls
        .cast::<pyo3::types::PyType>()
        .is_ok_and(|t| t.is_subclass(&tuple_type).unwrap_or(false));
    if !ok {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "_Pending must be a tuple type",
        ));
    }
    let ctx = VCtx {
        plan_fn: plan_fn.unbind(),
        pending_cls: pending_cls.unbind(),
        max_pending,
        large_request,
        object_new: object_new.unbind(),
        skipped_args: PyTuple::new(py, [skipped])?.unbind(),
        key_event_args: PyTuple::new(py, [common.key_event.bind(py)])?.unbind(),
    };
    *VCTX.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(ctx));
    PLANS.with(|p| p.borrow_mut().clear());
    PRINCIPALS.with(|p| p.borrow_mut().clear());
    Ok(())
}

/// What the event builder needs of one `_Plan` (route + static extra / fields).
struct PlanInfo {
    plan: Py<PyAny>,
    engine: Py<PyString>,
    skip: Option<Py<PyString>>,
    mount: Option<String>,
    uid_suffix: Option<String>,
    qualifier: Option<Py<PyString>>,
    key_version: Option<String>,
    extra: Py<PyDict>,
    fields: Py<PyDict>,
    dynamic: i64,
    has_mount_type: bool,
    /// key_uid of the last (cluster, namespace path) seen with this plan.
    uid_cache: RefCell<Option<(String, String, Py<PyString>)>>,
    /// Event constants of a key-related plan (None: the plan skips the record): action (= request.operation), operation,
    /// operation_class and the ECS category / type lists to copy.
    ev: Option<PlanEvent>,
}

struct PlanEvent {
    action: Py<PyString>,
    operation: Py<PyString>,
    op_class: Py<PyAny>,
    category: Py<PyList>,
    typ: Py<PyList>,
}

/// The (fields, extra) parts of one principal, as `_principal_parts` builds them.
struct PrincipalParts {
    fields: Py<PyDict>,
    extra: Py<PyDict>,
    has_user_name: bool,
}

thread_local! {
    static PLANS: RefCell<FxMap<Vec<u8>, Rc<PlanInfo>>> = RefCell::new(FxMap::default());
    static PRINCIPALS: RefCell<FxMap<Vec<u8>, Rc<PrincipalParts>>> =
        RefCell::new(FxMap::default());
}

fn opt_str(v: &Bound<'_, PyAny>) -> Fb<Option<String>> {
    if v.is_none() {
        Ok(None)
    } else {
        Ok(Some(
            v.cast::<PyString>()
                .map_err(|_| Fallback)?
                .to_str()?
                .to_owned(),
        ))
    }
}

fn opt_pystr(v: &Bound<'_, PyAny>) -> Fb<Option<Py<PyString>>> {
    if v.is_none() {
        Ok(None)
    } else {
        Ok(Some(
            v.cast::<PyString>()
                .map_err(|_| Fallback)?
                .clone()
                .unbind(),
        ))
    }
}

fn push_part(key: &mut Vec<u8>, v: Option<&str>) {
    match v {
        None => key.push(0),
        Some(s) => {
            key.push(1);
            key.extend_from_slice(&(s.len() as u64).to_le_bytes());
            key.extend_from_slice(s.as_bytes());
        }
    }
}

fn plan_of(
    py: Python<'_>,
    ctx: &VCtx,
    path: &str,
    op: &str,
    mp: Option<&str>,
    mt: Option<&str>,
) -> Fb<Rc<PlanInfo>> {
    let mut key = Vec::with_capacity(path.len() + op.len() + 48);
    push_part(&mut key, Some(path));
    push_part(&mut key, Some(op));
    push_part(&mut key, mp);
    push_part(&mut key, mt);
    if let Some(hit) = PLANS.with(|p| p.borrow().get(&key).cloned()) {
        return Ok(hit);
    }
    let plan = ctx.plan_fn.bind(py).call1((path, op, mp, mt))?;
    let t = plan.cast::<PyTuple>().map_err(|_| Fallback)?;
    let route = t.get_item(0)?;
    let r = route.cast::<PyTuple>().map_err(|_| Fallback)?;
    let extra = t
        .get_item(1)?
        .cast_into::<PyDict>()
        .map_err(|_| Fallback)?;
    let fields = t
        .get_item(2)?
        .cast_into::<PyDict>()
        .map_err(|_| Fallback)?;
    let dynamic: i64 = t.get_item(3)?.extract()?;
    let operation = opt_pystr(&r.get_item(2)?)?;
    let ev = match &operation {
        None => None,
        Some(o) => {
            let common = CTX.get(py).ok_or(Fallback)?;
            let o = o.bind(py);
            let op_class = match common.operation_class.bind(py).get_item(o)? {
                Some(c) => c,
                None => intern!(py, "other").clone().into_any(),
            };
            let cat = common
                .ecs_category
                .bind(py)
                .get_item(&op_class)?
                .ok_or(Fallback)?;
            let typ = match common.ecs_type.bind(py).get_item(o)? {
                Some(t) => t,
                None => common.info.bind(py).clone(),
            };
            Some(PlanEvent {
                action: PyString::new(py, op).unbind(),
                operation: o.clone().unbind(),
                op_class: op_class.unbind(),
                category: cat
                    .cast_into::<PyList>()
                    .map_err(|_| Fallback)?
                    .unbind(),
                typ: typ
                    .cast_into::<PyList>()
                    .map_err(|_| Fallback)?
                    .unbind(),
            })
        }
    };
    let info = PlanInfo {
        uid_cache: RefCell::new(None),
        ev,
        engine: r
            .get_item(0)?
            .cast_into::<PyString>()
            .map_err(|_| Fallback)?
            .unbind(),
        mount: opt_str(&r.get_item(1)?)?,
        skip: opt_pystr(&r.get_item(3)?)?,
        uid_suffix: opt_str(&r.get_item(4)?)?,
        qualifier: opt_pystr(&r.get_item(9)?)?,
        key_version: opt_str(&r.get_item(10)?)?,
        has_mount_type: extra.contains(intern!(py, "hashicorp_vault.mount_type"))?,
        extra: extra.unbind(),
        fields: fields.unbind(),
        dynamic,
        plan: plan.unbind(),
    };
    let info = Rc::new(info);
    PLANS.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() >= 65536 {
            p.clear();
        }
        p.insert(key, info.clone());
    });
    Ok(info)
}

// -------------------------------------------------------------------------- helpers

/// Python str.isspace for one char.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

fn py_strip(s: &str) -> &str {
    s.trim_matches(py_space)
}

/// parsers.vault.error_message.
fn error_message(raw: &str) -> String {
    if !raw.contains("occurred:") {
        return py_strip(raw).to_owned();
    }
    let items: Vec<&str> = raw
        .split('\n')
        .filter_map(|ln| {
            let t = py_strip(ln);
            t.strip_prefix("* ").map(py_strip)
        })
        .collect();
    if items.is_empty() {
        py_strip(raw).to_owned()
    } else {
        items.join("; ")
    }
}

/// The principal-cache key of an auth block (the values `_principal_parts` reads), or
/// None when a value has a type this key cannot express (then no caching).
fn principal_key(doc: &Doc<'_>, auth: &V) -> Option<Vec<u8>> {
    let mut key = Vec::with_capacity(160);
    for name in ["accessor", "entity_id", "display_name", "token_type"] {
        match doc.get(Some(auth), name) {
            None | Some(V::Null) => key.push(0),
            Some(V::Str(s)) => push_part(&mut key, Some(doc.text(*s))),
            _ => return None,
        }
    }
    for name in ["policies", "token_policies"] {
        match doc.get(Some(auth), name) {
            None | Some(V::Null) => key.push(0),
            Some(a @ V::Arr(..)) => {
                key.push(2);
                key.extend_from_slice(&(doc.elems(a).len() as u64).to_le_bytes());
                for (_, x) in doc.elems(a) {
                    match x {
                        V::Str(s) => push_part(&mut key, Some(doc.text(*s))),
                        _ => return None,
                    }
                }
            }
            _ => return None,
        }
    }
    Some(key)
}

/// parsers.vault._principal_parts (for a non-empty auth dict) as Python dicts.
fn principal_parts(py: Python<'_>, doc: &Doc<'_>, auth: &V) -> Fb<PrincipalParts> {
    let a = Some(auth);
    let fields = PyDict::new(py);
    let extra = PyDict::new(py);
    let entity = doc.js(doc.get(a, "entity_id"));
    let accessor = doc.js(doc.get(a, "accessor"));
    let acc_py = accessor.map(|s| PyString::new(py, s));
    if let Some(e) = entity {
        fields.set_item(intern!(py, "user_id"), e)?;
    } else if let Some(acc) = accessor {
        fields.set_item(intern!(py, "user_id"), format!("token:{acc}"))?;
    }
    let name = doc.js(doc.get(a, "display_name"));
    if let Some(n) = name {
        fields.set_item(intern!(py, "user_name"), n)?;
    }
    let policies = doc.str_list(doc.get(a, "policies"));
    let token_policies = doc.str_list(doc.get(a, "token_policies"));
    let root = policies.contains(&"root") || token_policies.contains(&"root");
    let policies = if policies.is_empty() {
        token_policies
    } else {
        policies
    };
    let token_type = doc.js(doc.get(a, "token_type"));
    if root {
        fields.set_item(intern!(py, "principal_type"), "root_token")?;
        extra.set_item(intern!(py, "hashicorp_vault.root_token"), true)?;
    } else if entity.is_some() || accessor.is_some() || name.is_some() {
        fields.set_item(intern!(py, "principal_type"), token_type.unwrap_or("token"))?;
    } else {
        fields.set_item(intern!(py, "principal_type"), "unauthenticated")?;
    }
    if let Some(acc) = &acc_py {
        fields.set_item(intern!(py, "session_id"), acc)?;
        extra.set_item(intern!(py, "hashicorp_vault.accessor"), acc)?;
    }
    if !policies.is_empty() {
        extra.set_item(
            intern!(py, "hashicorp_vault.policies"),
            PyList::new(py, policies.iter().copied())?,
        )?;
    }
    if let Some(tt) = token_type {
        extra.set_item(intern!(py, "hashicorp_vault.token_type"), tt)?;
    }
    Ok(PrincipalParts {
        fields: fields.unbind(),
        extra: extra.unbind(),
        has_user_name: name.is_some(),
    })
}

/// VaultAuditParser._principal: merge the (cached) principal parts; True if it set
/// user_name.
fn apply_principal<'py>(
    py: Python<'py>,
    doc: &Doc<'_>,
    auth: &V,
    ev: &Event<'py>,
    extra: &Bound<'py, PyDict>,
) -> Fb<bool> {
    let parts = match principal_key(doc, auth) {
        Some(key) => match PRINCIPALS.with(|p| p.borrow().get(&key).cloned()) {
            Some(hit) => hit,
            None => {
                let parts = Rc::new(principal_parts(py, doc, auth)?);
                PRINCIPALS.with(|p| {
                    let mut p = p.borrow_mut();
                    if p.len() >= 4096 {
                        p.clear();
                    }
                    p.insert(key, parts.clone());
                });
                parts
            }
        },
        None => Rc::new(principal_parts(py, doc, auth)?),
    };
    ev.d.update(parts.fields.bind(py).as_mapping())?;
    extra.update(parts.extra.bind(py).as_mapping())?;
    Ok(parts.has_user_name)
}

fn new_token_policies<'d>(doc: &'d Doc<'_>, resp_auth: &'d V) -> Vec<&'d str> {
    let p = doc.str_list(doc.get(Some(resp_auth), "token_policies"));
    if p.is_empty() {
        doc.str_list(doc.get(Some(resp_auth), "policies"))
    } else {
        p
    }
}

fn uid(cluster: &str, ns: &str, mount: &str, suffix: &str) -> String {
    let mut s = String::with_capacity(12 + cluster.len() + ns.len() + mount.len() + suffix.len());
    s.push_str("vault://");
    s.push_str(cluster);
    s.push('/');
    s.push_str(ns);
    s.push_str(mount);
    s.push('/');
    s.push_str(suffix);
    s
}

/// A `Skipped(reason, path, offset)` built like `object.__new__` + the dataclass's own
/// `object.__setattr__` calls (the frozen dataclass __init__ is the slow part).
fn skipped<'py>(
    py: Python<'py>,
    ctx: &VCtx,
    reason: &Bound<'py, PyAny>,
    path: &Bound<'py, PyAny>,
    offset: &Bound<'py, PyAny>,
) -> Fb<Bound<'py, PyAny>> {
    let obj = ctx.object_new.bind(py).call1(ctx.skipped_args.bind(py))?;
    for (name, value) in [
        (intern!(py, "reason"), reason),
        (intern!(py, "path"), path),
        (intern!(py, "offset"), offset),
    ] {
        // SAFETY: all three pointers are valid owned references for the call.
        let rc = unsafe {
            pyo3::ffi::PyObject_GenericSetAttr(obj.as_ptr(), name.as_ptr(), value.as_ptr())
        };
        if rc != 0 {
            return Err(PyErr::fetch(py).into());
        }
    }
    Ok(obj)
}

/// `_Pending(*items)`, built as `tuple.__new__(_Pending, items)` does (tp_alloc, then the
/// items), without the Python-level call.
fn new_pending<'py>(
    py: Python<'py>,
    ctx: &VCtx,
    items: [Bound<'py, PyAny>; 6],
) -> Fb<Bound<'py, PyAny>> {
    let cls = ctx.pending_cls.bind(py);
    // SAFETY: vault_init checked that `cls` is a type and a subclass of tuple, so its
    // tp_alloc builds a tuple of 6 NULL items that we fill with owned references.
    unsafe {
        let tp = cls.as_ptr() as *mut pyo3::ffi::PyTypeObject;
        let alloc = (*tp).tp_alloc.ok_or(Fallback)?;
        let obj = alloc(tp, 6);
        if obj.is_null() {
            return Err(PyErr::fetch(py).into());
        }
        for (i, it) in items.into_iter().enumerate() {
            pyo3::ffi::PyTuple_SET_ITEM(obj, i as pyo3::ffi::Py_ssize_t, it.into_ptr());
        }
        Ok(Bound::from_owned_ptr(py, obj))
    }
}

/// parsers.vault._syslog_host for an ASCII frame (anything else falls back).
fn syslog_host(prefix: &[u8]) -> Fb<Option<String>> {
    if !prefix.is_ascii() {
        return Err(Fallback);
    }
    // str.split(): runs of ASCII whitespace incl. \x1c-\x1f
    let toks: Vec<&[u8]> = prefix
        .split(|&c| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0x1c..=0x1f))
        .filter(|t| !t.is_empty())
        .collect();
    let tok = |i: usize| -> Option<String> {
        toks.get(i).map(|t| String::from_utf8_lossy(t).into_owned())
    };
    let Some(first) = toks.first() else {
        return Ok(None);
    };
    if first.starts_with(b"<") && first.contains(&b'>') {
        let gt = first.iter().position(|&c| c == b'>').unwrap_or(0);
        let rest = &first[gt + 1..];
        if !rest.is_empty() && rest.iter().all(|c| c.is_ascii_digit()) {
            // RFC 5424: <pri>1 TIMESTAMP HOST APP PROCID MSGID SD
            return Ok(if toks.len() > 2 && toks[2] != b"-" {
                tok(2)
            } else {
                None
            });
        }
        return Ok(if toks.len() > 4 { tok(3) } else { None }); // BSD
    }
    if first.len() == 3 && first.iter().all(|c| c.is_ascii_alphabetic()) && toks.len() > 4 {
        return Ok(tok(3)); // journald / file syslog
    }
    if first.len() >= 19 && first[4] == b'-' && toks.len() > 2 {
        return Ok(tok(1)); // ISO-stamped syslog
    }
    Ok(None)
}

/// `_s(record.get("error"))` of a request stored here (its raw JSON): parsed again only
/// when the bytes can hold an `error` member at all.
fn stored_error(raw: &[u8]) -> Fb<Option<String>> {
    if memchr::memmem::find(raw, b"error").is_none() && memchr::memchr(b'\\', raw).is_none() {
        return Ok(None);
    }
    let text = std::str::from_utf8(raw).map_err(|_| Fallback)?;
    let (doc, root) = parse_doc(text)?;
    Ok(doc.js(doc.get(Some(&root), "error")).map(str::to_owned))
}

/// parsers.netaddr.clean_ip for the IPv6 forms ('2001:db8::1', '[::1]:8200'): Python's
/// compressed form, which Rust's Display shares (RFC 5952) except for IPv4-mapped
/// addresses; those, zone ids, dotted tails and anything unparsable fall back.
fn clean_ipv6(v: &str) -> Fb<String> {
    if !v.is_ascii() {
        return Err(Fallback);
    }
    // str.strip(): ASCII whitespace incl. \x0b and \x1c-\x1f
    let t = v.trim_matches(
        |c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b'..='\x0c' | '\x1c'..='\x1f'),
    );
    let inner = match (t.strip_prefix('['), t.find(']')) {
        (Some(_), Some(end)) => &t[1..end],
        _ => t,
    };
    if inner.contains(['.', '%']) || inner.matches(':').count() < 2 {
        return Err(Fallback);
    }
    let ip: std::net::Ipv6Addr = inner.parse().map_err(|_| Fallback)?;
    let seg = ip.segments();
    if seg[..6] == [0, 0, 0, 0, 0, 0xffff] {
        return Err(Fallback);
    }
    Ok(ip.to_string())
}

/// A dict with room for `n` items (no resizing while an event is filled in).
fn presized(py: Python<'_>, n: isize) -> Fb<Bound<'_, PyDict>> {
    // SAFETY: returns a new reference or NULL with an exception set.
    unsafe {
        let d = crate::common::_PyDict_NewPresized(n);
        if d.is_null() {
            return Err(PyErr::fetch(py).into());
        }
        Ok(Bound::from_owned_ptr(py, d).cast_into_unchecked())
    }
}

// --------------------------------------------------------------------------- record

/// One line: Ok when its outcomes were appended to `out` / its request stored in
/// `pending`, Err(Fallback) (nothing touched) when Python must handle it.
#[allow(clippy::too_many_arguments)]
fn record<'py>(
    py: Python<'py>,
    ctx: &VCtx,
    b: &[u8],
    path: &Bound<'py, PyAny>,
    offset: i64,
    pending: &Bound<'py, PyDict>,
    out: &Bound<'py, PyList>,
    cluster: &str,
) -> Fb<()> {
    if b.starts_with(OVERLONG) {
        return Err(Fallback); // iter_lines' over-long marker: quarantined by Python
    }
    // _split_frame: any text before the first '{"' is a syslog frame / audit prefix
    let (host, b): (Option<String>, &[u8]) = if b.first() == Some(&b'{') {
        (None, b)
    } else {
        let i = memchr::memmem::find(b, b"{\"").ok_or(Fallback)?;
        (syslog_host(&b[..i])?, &b[i..])
    };
    let text = if b.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(b) }
    } else {
        std::str::from_utf8(b).map_err(|_| Fallback)?
    };
    let (doc, root_v) = parse_doc(text)?;
    let root = Some(&root_v);
    let is_response = match doc.any_str(doc.get(root, "type")) {
        Some("request") => false,
        Some("response") => true,
        _ => return Err(Fallback), // KMIP, unknown or missing type
    };
    let req = dict(doc.get(root, "request")).ok_or(Fallback)?;
    let ts = normalize_iso(doc.any_str(doc.get(root, "time")).ok_or(Fallback)?)?;
    let reqo = Some(req);
    let rpath = doc.any_str(doc.get(reqo, "path")).ok_or(Fallback)?;
    let op = doc.any_str(doc.get(reqo, "operation")).ok_or(Fallback)?;
    let mp = doc.any_str(doc.get(reqo, "mount_point"));
    let mt = doc.any_str(doc.get(reqo, "mount_type"));
    let plan = plan_of(py, ctx, rpath, op, mp, mt)?;
    let Some(pe) = &plan.ev else {
        let reason = match &plan.skip {
            Some(s) if !s.bind(py).to_str()?.is_empty() => s.bind(py).clone(),
            _ => intern!(py, "not_key_related").clone(),
        };
        let off = offset
            .into_pyobject(py)
            .map_err(|e| -> Fallback { match e {} })?;
        out.append(skipped(py, ctx, reason.as_any(), path, off.as_any())?)?;
        return Ok(());
    };
    if !is_response && rpath == "sys/audit/test" && doc.get(root, "auth").is_none() {
        // Vault writes this synthetic record to validate a newly enabled device.
        let off = offset
            .into_pyobject(py)
            .map_err(|e| -> Fallback { match e {} })?;
        let reason = intern!(py, "audit_device_test");
        out.append(skipped(py, ctx, reason.as_any(), path, off.as_any())?)?;
        return Ok(());
    }
    let rid = doc.js(doc.get(reqo, "id")).ok_or(Fallback)?;
    let pkey = PyString::new(py, rid);
    let rec_err = doc.js(doc.get(root, "error"));

    if !is_response {
        if pending.contains(&pkey)? || pending.len() >= ctx.max_pending
            || b.len() > ctx.large_request
        {
            return Err(Fallback);
        }
        let p = new_pending(
            py,
            ctx,
            [
                offset
                    .into_pyobject(py)
                    .map_err(|e| -> Fallback { match e {} })?
                    .into_any(),
                py.None().into_bound(py),
                PyString::new(py, &ts).into_any(),
                PyBytes::new(py, b).into_any(),
                match &host {
                    Some(h) => PyString::new(py, h).into_any(),
                    None => py.None().into_bound(py),
                },
                plan.plan.bind(py).clone(),
            ],
        )?;
        pending.set_item(pkey, p)?;
        return Ok(());
    }

    // ---- a response: the event (VaultAuditParser._event and _normal, non-KMIP)
    let req_p = match pending.get_item(&pkey)? {
        Some(p) => Some(p.cast_into::<PyTuple>().map_err(|_| Fallback)?),
        None => None,
    };
    let ev = Event {
        py,
        d: presized(py, 34)?,
    };
    let extra = presized(py, 16)?;
    extra.set_item(
        intern!(py, "hashicorp_vault.record_type"),
        intern!(py, "response"),
    )?;
    extra.set_item(
        intern!(py, "hashicorp_vault.records"),
        if req_p.is_some() {
            intern!(py, "pair")
        } else {
            intern!(py, "response_only")
        },
    )?;
    let mut req_err: Option<String> = None;
    let mut req_offset = None;
    let ts_obj: Bound<'py, PyAny> = match &req_p {
        Some(p) => {
            let off = p.get_item(0)?;
            extra.set_item(intern!(py, "hashicorp_vault.request_offset"), &off)?;
            req_offset = Some(off);
            let r = p.get_item(1)?;
            if r.is_none() {
                // stored here: only the raw JSON is kept
                let raw = p.get_item(3)?;
                let raw = raw.cast::<PyBytes>().map_err(|_| Fallback)?.as_bytes();
                req_err = stored_error(raw)?;
            } else {
                let d = r.cast::<PyDict>().map_err(|_| Fallback)?;
                if let Some(e) = d.get_item(intern!(py, "error"))? {
                    if let Ok(s) = e.cast::<PyString>() {
                        let s = s.to_str()?;
                        if !s.is_empty() {
                            req_err = Some(s.to_owned());
                        }
                    }
                }
            }
            p.get_item(2)?
        }
        None => PyString::new(py, &ts).into_any(),
    };
    let ns = dict(doc.get(reqo, "namespace"));
    let ns_path = doc.js(doc.get(ns, "path")).unwrap_or("");
    let ns_val = if ns_path.is_empty() {
        doc.js(doc.get(ns, "id"))
    } else {
        Some(ns_path)
    };
    if let Some(n) = ns_val {
        let v = if n == "root" {
            intern!(py, "root").clone()
        } else {
            PyString::new(py, n)
        };
        extra.set_item(intern!(py, "hashicorp_vault.namespace"), v)?;
    }
    match (&host, &req_p) {
        (Some(h), _) if !h.is_empty() => {
            extra.set_item(intern!(py, "hashicorp_vault.syslog_host"), h)?;
        }
        (_, Some(p)) => {
            let h = p.get_item(4)?;
            if h.is_truthy()? {
                extra.set_item(intern!(py, "hashicorp_vault.syslog_host"), h)?;
            }
        }
        _ => {}
    }
    let err: Option<&str> = rec_err.or(req_err.as_deref());
    let outcome = if err.is_some() {
        intern!(py, "failure")
    } else {
        intern!(py, "success")
    };
    let err_msg = err.map(error_message);

    // _normal
    extra.update(plan.extra.bind(py).as_mapping())?;
    ev.d.update(plan.fields.bind(py).as_mapping())?;
    let resp = dict(doc.get(root, "response"));
    if !plan.has_mount_type {
        if let Some(m) = doc.js(doc.get(resp, "mount_type")) {
            extra.set_item(intern!(py, "hashicorp_vault.mount_type"), m)?;
        }
    }
    let auth = nonempty_dict(doc.get(root, "auth"));
    let resp_auth = nonempty_dict(doc.get(resp, "auth"));
    let dynamic = plan.dynamic;
    let set_uid = |ev: &Event<'py>| -> Fb<()> {
        if let (Some(sfx), Some(m)) = (&plan.uid_suffix, &plan.mount) {
            let mut cache = plan.uid_cache.borrow_mut();
            let hit = match &*cache {
                Some((c, n, u)) if c == cluster && n == ns_path => u.bind(py).clone(),
                _ => {
                    let u = PyString::new(py, &uid(cluster, ns_path, m, sfx));
                    *cache = Some((cluster.to_owned(), ns_path.to_owned(), u.clone().unbind()));
                    u
                }
            };
            ev.set(intern!(py, "key_uid"), hit)?;
        }
        Ok(())
    };
    if dynamic & DYN_LOGIN != 0 {
        let mut has_user = false;
        if let Some(a) = resp_auth.or(auth) {
            has_user = apply_principal(py, &doc, a, &ev, &extra)?;
        }
        if !has_user {
            if let Some(q) = &plan.qualifier {
                if !q.bind(py).to_str()?.is_empty() {
                    ev.set(intern!(py, "user_name"), q.bind(py))?;
                }
            }
        }
        if let Some(ra) = resp_auth {
            let pols = new_token_policies(&doc, ra);
            if !pols.is_empty() {
                extra.set_item(
                    intern!(py, "hashicorp_vault.new_token_policies"),
                    PyList::new(py, pols.iter().copied())?,
                )?;
            }
        }
    } else {
        if let Some(a) = auth {
            apply_principal(py, &doc, a, &ev, &extra)?;
        }
        if dynamic == 0 {
            set_uid(&ev)?;
        } else {
            let data = dict(doc.get(reqo, "data"));
            if dynamic & DYN_TOKEN != 0 {
                if matches!(doc.get(data, "no_parent"), Some(V::Bool(true))) {
                    extra.set_item(intern!(py, "hashicorp_vault.orphan"), true)?;
                }
                if let Some(ra) = resp_auth {
                    let pols = new_token_policies(&doc, ra);
                    if !pols.is_empty() {
                        extra.set_item(
                            intern!(py, "hashicorp_vault.new_token_policies"),
                            PyList::new(py, pols.iter().copied())?,
                        )?;
                        if pols.contains(&"root") {
                            extra.set_item(
                                intern!(py, "hashicorp_vault.root_token_created"),
                                true,
                            )?;
                        }
                    }
                }
            } else {
                set_uid(&ev)?;
                let mut version: Option<String> = plan.key_version.clone();
                let rdata = dict(doc.get(resp, "data"));
                if dynamic & DYN_TRANSIT != 0 {
                    let a = py_int(doc.get(data, "key_version"))?;
                    let b = py_int(doc.get(rdata, "key_version"))?;
                    if version.is_none() {
                        version = a.or(b).map(|i| i.to_string());
                    }
                    if let Some(batch @ V::Arr(..)) = doc.get(data, "batch_input") {
                        extra.set_item(
                            intern!(py, "hashicorp_vault.batch_size"),
                            doc.elems(batch).len(),
                        )?;
                    }
                    if dynamic & DYN_KEYCFG != 0 {
                        key_config(&extra, &doc, data)?;
                        if let Some(spec) = doc.js(doc.get(data, "type")) {
                            if !spec.starts_with("hmac-") {
                                ev.set(intern!(py, "key_spec"), spec)?;
                            }
                        }
                    }
                } else if dynamic & DYN_KV != 0 {
                    let meta = match doc.get(rdata, "metadata") {
                        Some(m) => dict(Some(m)),
                        None => rdata,
                    };
                    if let Some(v) = py_int(doc.get(meta, "version"))? {
                        version = Some(v.to_string());
                    }
                    if let Some(vers @ V::Arr(..)) = doc.get(data, "versions") {
                        let mut ints = Vec::new();
                        for (_, x) in doc.elems(vers) {
                            match x {
                                V::Int(i) => ints.push(*i),
                                V::BigInt => return Err(Fallback),
                                _ => {}
                            }
                        }
                        if !ints.is_empty() {
                            extra.set_item(
                                intern!(py, "hashicorp_vault.kv_versions"),
                                PyList::new(py, ints.iter().copied())?,
                            )?;
                        }
                    }
                }
                if let Some(v) = version {
                    ev.set(intern!(py, "key_version"), v)?;
                }
            }
        }
    }

    let event_id = stable_id(&[DATASET.as_bytes(), rid.as_bytes(), cluster.as_bytes()]);
    if let Some(remote) = doc.js(doc.get(reqo, "remote_address")) {
        let ip = match clean_ip(remote) {
            Ok(ip) => ip,
            Err(Fallback) => Some(clean_ipv6(remote)?),
        };
        let addr = PyString::new(py, remote);
        match ip {
            Some(ip) if ip == remote => ev.set(intern!(py, "source_ip"), &addr)?,
            ip => ev.set(intern!(py, "source_ip"), ip)?,
        }
        ev.set(intern!(py, "source_address"), addr)?;
    }
    ev.set(intern!(py, "error_message"), err_msg)?;
    ev.set(intern!(py, "request_id"), &pkey)?;
    ev.set(intern!(py, "extra"), &extra)?;
    let d = &ev.d;
    d.set_item(intern!(py, "timestamp"), ts_obj)?;
    d.set_item(intern!(py, "event_id"), event_id)?;
    d.set_item(intern!(py, "dataset"), intern!(py, "hashicorp_vault.audit"))?;
    d.set_item(intern!(py, "provider"), plan.engine.bind(py))?;
    d.set_item(intern!(py, "action"), pe.action.bind(py))?;
    d.set_item(intern!(py, "outcome"), outcome)?;
    d.set_item(intern!(py, "operation"), pe.operation.bind(py))?;
    d.set_item(intern!(py, "operation_class"), pe.op_class.bind(py))?;
    d.set_item(intern!(py, "log_file_path"), path)?;
    d.set_item(intern!(py, "log_offset"), offset)?;
    d.set_item(
        intern!(py, "category"),
        pe.category.bind(py).as_sequence().to_list()?,
    )?;
    d.set_item(
        intern!(py, "type"),
        pe.typ.bind(py).as_sequence().to_list()?,
    )?;
    let event = ctx.object_new.bind(py).call1(ctx.key_event_args.bind(py))?;
    event.setattr(intern!(py, "__dict__"), d)?;
    if let Some(off) = req_offset {
        let skip = skipped(py, ctx, intern!(py, "paired_request").as_any(), path, &off)?;
        pending.del_item(&pkey)?;
        out.append(skip)?;
    }
    out.append(event)?;
    Ok(())
}

/// The non-HMAC'd booleans and numbers of a transit key config request.
fn key_config<'py>(extra: &Bound<'py, PyDict>, doc: &Doc<'_>, data: Option<&V>) -> Fb<()> {
    // (name, kind): 0 bool only, 1 bool or int, 2 bool or non-HMAC'd str
    let fields: [(&str, u8); 7] = [
        ("exportable", 0),
        ("deletion_allowed", 0),
        ("allow_plaintext_backup", 0),
        ("derived", 0),
        ("min_decryption_version", 1),
        ("min_encryption_version", 1),
        ("auto_rotate_period", 2),
    ];
    for (name, kind) in fields {
        let key = || format!("hashicorp_vault.key_config.{name}");
        match (doc.get(data, name), kind) {
            (Some(V::Bool(b)), _) => extra.set_item(key(), *b)?,
            (Some(V::Int(i)), 1) => extra.set_item(key(), *i)?,
            (Some(V::BigInt), 1) => return Err(Fallback),
            (Some(V::Str(s)), 2) if !doc.text(*s).starts_with("hmac-") => {
                extra.set_item(key(), doc.text(*s))?
            }
            _ => {}
        }
    }
    Ok(())
}

// -------------------------------------------------------------------- whole streams

/// Python bytes.isspace() set (bytes.strip() strips these).
fn byte_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// A line of the stream: a span of the current chunk or an owned buffer.
enum Line {
    Span(usize, usize),
    Owned(Vec<u8>),
}

/// `VaultAuditParser.parse` for one stream, minus the end-of-file flush of unanswered
/// requests (left to Python): an iterator of outcomes. Lines are framed exactly as
/// parsers.framing.iter_lines frames them; each line is handled here when possible,
/// else by `fallback(offset, line, path, pending, out)` (the parser's `_record`).
#[pyclass(module = "parsers._native")]
struct VaultStream {
    ctx: Arc<VCtx>,
    read: Py<PyAny>,
    /// passed to `read` as is (framing.CHUNK)
    chunk_size: Py<PyAny>,
    /// options.max_line_bytes (any int, compared like Python does)
    max_line: i128,
    path: Py<PyAny>,
    pending: Py<PyDict>,
    out: Py<PyList>,
    cluster: String,
    fallback: Py<PyAny>,
    /// next outcome of `out` to hand out
    out_next: usize,
    // iter_lines state
    chunk: Option<Py<PyBytes>>,
    ci: usize, // next line start inside `chunk`
    coff: u64, // its stream offset
    pos: u64,  // offset of the next chunk's first byte
    carry: Vec<u8>,
    carry_start: u64,
    skipping: bool,
    eof: bool,
    done: bool,
    /// lines seen / lines handled natively (for tests and the benchmark report)
    #[pyo3(get)]
    lines: u64,
    #[pyo3(get)]
    native: u64,
}

const OVERLONG: &[u8] = b"\x00keytrail:overlong\x00";

fn overlong(line: &[u8]) -> Line {
    let mut v = Vec::with_capacity(OVERLONG.len() + 512);
    v.extend_from_slice(OVERLONG);
    v.extend_from_slice(&line[..line.len().min(512)]);
    Line::Owned(v)
}

fn strip_cr(mut v: Vec<u8>) -> Vec<u8> {
    if v.last() == Some(&b'\r') {
        v.pop();
    }
    v
}

impl VaultStream {
    /// The next (offset, line) exactly as iter_lines yields it, None at the end.
    fn next_line(&mut self, py: Python<'_>) -> PyResult<Option<(u64, Line)>> {
        loop {
            if let Some(chunk) = &self.chunk {
                let b = chunk.bind(py).as_bytes();
                let start = self.ci;
                match memchr::memchr(b'\n', &b[start..]) {
                    Some(k) => {
                        let off = self.coff;
                        self.ci += k + 1;
                        self.coff += k as u64 + 1;
                        let line = &b[start..start + k];
                        if k as i128 > self.max_line {
                            return Ok(Some((off, overlong(line))));
                        }
                        if k > 0 && (line[0] > 32 || !line.iter().all(|&c| byte_space(c))) {
                            let end = if line[k - 1] == 13 {
                                start + k - 1
                            } else {
                                start + k
                            };
                            return Ok(Some((off, Line::Span(start, end))));
                        }
                        continue;
                    }
                    None => {
                        self.carry = b[start..].to_vec();
                        self.carry_start = self.coff;
                        self.chunk = None;
                        if self.carry.len() as i128 > self.max_line {
                            let l = overlong(&self.carry);
                            self.skipping = true;
                            self.carry = Vec::new();
                            return Ok(Some((self.carry_start, l)));
                        }
                        continue;
                    }
                }
            }
            if self.eof {
                if self.done {
                    return Ok(None);
                }
                self.done = true;
                if !self.skipping && !self.carry.iter().all(|&c| byte_space(c)) {
                    let carry = strip_cr(std::mem::take(&mut self.carry));
                    return Ok(Some((self.carry_start, Line::Owned(carry))));
                }
                return Ok(None);
            }
            let chunk = self.read.bind(py).call1((self.chunk_size.bind(py),))?;
            let chunk = match chunk.cast_into::<PyBytes>() {
                Ok(c) => c,
                // bytearray / memoryview from an odd stream: the same bytes
                Err(e) => PyBytes::new(py, &e.into_inner().extract::<Vec<u8>>()?),
            };
            let b = chunk.as_bytes();
            if b.is_empty() {
                self.eof = true;
                continue;
            }
            let chunk_start = self.pos;
            self.pos += b.len() as u64;
            let Some(nl) = memchr::memchr(b'\n', b) else {
                if self.skipping {
                    continue;
                }
                self.carry.extend_from_slice(b);
                if self.carry.len() as i128 > self.max_line {
                    let l = overlong(&self.carry);
                    self.skipping = true;
                    self.carry = Vec::new();
                    return Ok(Some((self.carry_start, l)));
                }
                continue;
            };
            let mut first: Option<(u64, Line)> = None;
            if self.skipping {
                self.skipping = false;
            } else {
                let mut line = std::mem::take(&mut self.carry);
                line.extend_from_slice(&b[..nl]);
                if line.len() as i128 > self.max_line {
                    first = Some((self.carry_start, overlong(&line)));
                } else if !line.iter().all(|&c| byte_space(c)) {
                    first = Some((self.carry_start, Line::Owned(strip_cr(line))));
                }
            }
            self.carry = Vec::new();
            self.ci = nl + 1;
            self.coff = chunk_start + nl as u64 + 1;
            self.chunk = Some(chunk.unbind());
            if first.is_some() {
                return Ok(first);
            }
        }
    }

    /// Handle one line: natively when possible, else through the Python fallback.
    fn handle(&mut self, py: Python<'_>, offset: u64, line: Line) -> PyResult<()> {
        self.lines += 1;
        let path = self.path.bind(py);
        let pending = self.pending.bind(py);
        let out = self.out.bind(py);
        let chunk = self.chunk.as_ref().map(|c| c.bind(py).clone());
        let bytes: &[u8] = match (&line, &chunk) {
            (Line::Span(a, b), Some(c)) => &c.as_bytes()[*a..*b],
            (Line::Owned(v), _) => v,
            (Line::Span(..), None) => {
                return Err(pyo3::exceptions::PyRuntimeError::new_err("lost chunk"));
            }
        };
        let off = i64::try_from(offset).map_err(|_| Fallback).ok();
        if let Some(off) = off {
            let ok = record(py, &self.ctx, bytes, path, off, pending, out, &self.cluster);
            if ok.is_ok() {
                self.native += 1;
                return Ok(());
            }
        }
        let line_obj = PyBytes::new(py, bytes);
        self.fallback
            .bind(py)
            .call1((offset, line_obj, path, pending, out))?;
        Ok(())
    }
}

#[pymethods]
impl VaultStream {
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        read: Py<PyAny>,
        chunk_size: Py<PyAny>,
        max_line: i128,
        path: Py<PyAny>,
        pending: Py<PyDict>,
        out: Py<PyList>,
        cluster: String,
        fallback: Py<PyAny>,
    ) -> PyResult<Self> {
        let ctx = VCTX
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("vault_init() first"))?;
        Ok(VaultStream {
            ctx,
            read,
            chunk_size,
            max_line,
            path,
            pending,
            out,
            cluster,
            fallback,
            out_next: 0,
            chunk: None,
            ci: 0,
            coff: 0,
            pos: 0,
            carry: Vec::new(),
            carry_start: 0,
            skipping: false,
            eof: false,
            done: false,
            lines: 0,
            native: 0,
        })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        loop {
            let out = self.out.bind(py);
            let n = out.len();
            if self.out_next < n {
                let item = out.get_item(self.out_next)?;
                self.out_next += 1;
                return Ok(Some(item.unbind()));
            }
            if n > 0 {
                out.call_method0(intern!(py, "clear"))?;
            }
            self.out_next = 0;
            match self.next_line(py)? {
                None => return Ok(None),
                Some((offset, line)) => self.handle(py, offset, line)?,
            }
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(vault_init, m)?)?;
    m.add_class::<VaultStream>()?;
    Ok(())
}

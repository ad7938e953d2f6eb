//! Shared pieces of the fast paths: ids, timestamps, IPs and KeyEvent construction.
//!
//! Every helper that cannot be exactly as the Python reference returns `Err(Fallback)`,
//! and the family function then returns `None` so the Python parser takes the record.

use blake2::digest::consts::U16;
use blake2::{Blake2b, Digest};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};
use pyo3::intern;

/// "The fast path is not sure; let the Python parser handle this record."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback;

pub type Fb<T> = Result<T, Fallback>;

impl From<PyErr> for Fallback {
    fn from(_: PyErr) -> Self {
        Fallback
    }
}

// pyo3 0.26 dropped these two from its API; the fast paths rely on both.

/// A value only touched while this thread is attached to the interpreter (what pyo3's
/// removed `GILProtected` was). Sound because the module is declared `gil_used`.
pub struct GilProtected<T>(T);

// SAFETY: every access goes through `get`, which needs a `Python` token, and the GIL
// serialises token holders (the module is `gil_used`, so free-threaded builds keep it).
unsafe impl<T: Send> Sync for GilProtected<T> {}

impl<T> GilProtected<T> {
    pub const fn new(v: T) -> Self {
        GilProtected(v)
    }

    pub fn get<'a>(&'a self, _py: Python<'a>) -> &'a T {
        &self.0
    }
}

extern "C" {
    // CPython's presized dict constructor (exported by every CPython 3.x, private API):
    // no resizing while an event's fields are filled in.
    pub fn _PyDict_NewPresized(minused: pyo3::ffi::Py_ssize_t) -> *mut pyo3::ffi::PyObject;
}

/// Python objects the event builder needs, handed over once by `parsers.native`.
pub struct Ctx {
    pub key_event: Py<PyType>,
    pub object_new: Py<PyAny>,
    pub operation_class: Py<PyDict>,
    pub ecs_category: Py<PyDict>,
    pub ecs_type: Py<PyDict>,
    pub info: Py<PyAny>,
}

pub static CTX: PyOnceLock<Ctx> = PyOnceLock::new();

#[pyfunction]
pub fn init(
    py: Python<'_>,
    key_event: Bound<'_, PyType>,
    operation_class: Bound<'_, PyDict>,
    ecs_category: Bound<'_, PyDict>,
    ecs_type: Bound<'_, PyDict>,
    info: Bound<'_, PyAny>,
) -> PyResult<()> {
    let object_new = py.import("builtins")?.getattr("object")?.getattr("__new__")?;
    let _ = CTX.set(
        py,
        Ctx {
            key_event: key_event.unbind(),
            object_new: object_new.unbind(),
            operation_class: operation_class.unbind(),
            ecs_category: ecs_category.unbind(),
            ecs_type: ecs_type.unbind(),
            info: info.unbind(),
        },
    );
    Ok(())
}

// ---------------------------------------------------------------------------- ids

/// parsers.base.stable_id: 32 hex chars of BLAKE2b-128 over 0x1F + part (+ 0x1F + part)...
pub fn stable_id(parts: &[&[u8]]) -> String {
    let mut h = Blake2b::<U16>::new();
    for p in parts {
        h.update(b"\x1f");
        h.update(p);
    }
    let out = h.finalize();
    let mut s = String::with_capacity(32);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter() {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[pyfunction]
#[pyo3(name = "stable_id")]
pub fn stable_id_py(parts: Vec<String>) -> String {
    let v: Vec<&[u8]> = parts.iter().map(|s| s.as_bytes()).collect();
    stable_id(&v)
}

// ---------------------------------------------------------------------- timestamps

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(b.iter().fold(0u32, |a, c| a * 10 + (c - b'0') as u32))
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

/// parsers.timeutil.normalize_iso for 'YYYY-MM-DD[T ]HH:MM:SS[.frac](Z|+HH:MM|...)'.
/// Only the exact-UTC forms are handled here; anything with an offset or odd spacing,
/// or a year outside timeutil's [MIN_YEAR, MAX_YEAR] (Python quarantines it as
/// bad_timestamp), falls back to Python.
pub fn normalize_iso(v: &str) -> Fb<String> {
    let b = v.as_bytes();
    let n = b.len();
    if n < 20 || b[n - 1] != b'Z' || b[10] != b'T' || b[4] != b'-' || b[7] != b'-'
        || b[13] != b':' || b[16] != b':'
    {
        return Err(Fallback);
    }
    let y = digits(&b[0..4]).ok_or(Fallback)?;
    let mo = digits(&b[5..7]).ok_or(Fallback)?;
    let d = digits(&b[8..10]).ok_or(Fallback)?;
    let h = digits(&b[11..13]).ok_or(Fallback)?;
    let mi = digits(&b[14..16]).ok_or(Fallback)?;
    let s = digits(&b[17..19]).ok_or(Fallback)?;
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y as i64, mo) || h > 23 || mi > 59
        || s > 59 || !(1970..=8999).contains(&y)
    {
        return Err(Fallback);
    }
    let mut out = String::with_capacity(24);
    out.push_str(&v[..19]);
    if n == 20 {
        out.push_str(".000Z");
        return Ok(out);
    }
    if b[19] != b'.' {
        return Err(Fallback);
    }
    let frac = &b[20..n - 1];
    if frac.is_empty() || !frac.iter().all(|c| c.is_ascii_digit()) {
        return Err(Fallback);
    }
    out.push('.');
    for i in 0..3 {
        out.push(*frac.get(i).unwrap_or(&b'0') as char);
    }
    out.push('Z');
    Ok(out)
}

#[pyfunction]
#[pyo3(name = "normalize_iso")]
pub fn normalize_iso_py(v: &str) -> Option<String> {
    normalize_iso(v).ok()
}

// ----------------------------------------------------------------------------- IPs

/// parsers.netaddr.clean_ip for the IPv4 forms ('1.2.3.4', '1.2.3.4:5'); a value that
/// is clearly not an address (no digit-dot shape, e.g. 'AWS Internal') is Ok(None);
/// IPv6 and anything unusual falls back.
pub fn clean_ip(v: &str) -> Fb<Option<String>> {
    let t = v.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if t.contains(':') && !(t.matches(':').count() == 1 && t.contains('.')) {
        return Err(Fallback); // IPv6 or bracketed: Python decides
    }
    let host = match t.find(':') {
        Some(i) => &t[..i],
        None => t,
    };
    if !host.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        // Letters: a service name ('AWS Internal', 'kms.amazonaws.com') is never an IP.
        if host.bytes().any(|c| c.is_ascii_alphabetic() || c == b' ') && !host.contains(':') {
            return Ok(None);
        }
        return Err(Fallback);
    }
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() != 4 {
        return Err(Fallback);
    }
    for p in &parts {
        if p.is_empty() || p.len() > 3 || (p.len() > 1 && p.starts_with('0')) {
            return Err(Fallback);
        }
        let n: u32 = p.parse().map_err(|_| Fallback)?;
        if n > 255 {
            return Err(Fallback);
        }
    }
    Ok(Some(host.to_string()))
}

#[pyfunction]
#[pyo3(name = "clean_ip")]
pub fn clean_ip_py(v: &str) -> PyResult<(bool, Option<String>)> {
    // (handled, value): handled=false means "ask Python".
    Ok(match clean_ip(v) {
        Ok(x) => (true, x),
        Err(Fallback) => (false, None),
    })
}

// -------------------------------------------------------------------------- events

/// A KeyEvent under construction: the instance dict, keyed by KeyEvent attribute names.
pub struct Event<'py> {
    pub py: Python<'py>,
    pub d: Bound<'py, PyDict>,
}

impl<'py> Event<'py> {
    pub fn new(py: Python<'py>) -> Self {
        Event { py, d: PyDict::new(py) }
    }

    /// Set attribute `key` (use `intern!(py, "name")`) to any convertible value.
    pub fn set<V: IntoPyObject<'py>>(&self, key: &Bound<'py, PyString>, value: V) -> Fb<()> {
        self.d.set_item(key, value).map_err(|_| Fallback)
    }

    /// Build the KeyEvent exactly as parsers.schema.new_event does: the required fields
    /// given here, operation_class / category / type derived, extra defaulted to {}.
    #[allow(clippy::too_many_arguments)]
    pub fn finish(
        self,
        timestamp: &str,
        event_id: &str,
        dataset: &Bound<'py, PyString>,
        provider: &Bound<'py, PyString>,
        action: &str,
        outcome: &Bound<'py, PyString>,
        operation: &str,
        log_file_path: &Bound<'py, PyAny>,
        log_offset: i64,
    ) -> Fb<Py<PyAny>> {
        let py = self.py;
        let ctx = CTX.get(py).ok_or(Fallback)?;
        let d = &self.d;
        d.set_item(intern!(py, "timestamp"), timestamp)?;
        d.set_item(intern!(py, "event_id"), event_id)?;
        d.set_item(intern!(py, "dataset"), dataset)?;
        d.set_item(intern!(py, "provider"), provider)?;
        d.set_item(intern!(py, "action"), action)?;
        d.set_item(intern!(py, "outcome"), outcome)?;
        let op = PyString::new(py, operation);
        let classes = ctx.operation_class.bind(py);
        let op_class = match classes.get_item(&op)? {
            Some(c) => c,
            None => intern!(py, "other").clone().into_any(),
        };
        d.set_item(intern!(py, "operation"), &op)?;
        d.set_item(intern!(py, "operation_class"), &op_class)?;
        d.set_item(intern!(py, "log_file_path"), log_file_path)?;
        d.set_item(intern!(py, "log_offset"), log_offset)?;
        let cat = ctx.ecs_category.bind(py).get_item(&op_class)?.ok_or(Fallback)?;
        d.set_item(intern!(py, "category"), cat.cast::<PyList>().map_err(|_| Fallback)?.as_sequence().to_list()?)?;
        let typ = match ctx.ecs_type.bind(py).get_item(&op)? {
            Some(t) => t,
            None => ctx.info.bind(py).clone(),
        };
        d.set_item(intern!(py, "type"), typ.cast::<PyList>().map_err(|_| Fallback)?.as_sequence().to_list()?)?;
        let extra_key = intern!(py, "extra");
        match d.get_item(extra_key)? {
            Some(x) if !x.is_none() => {}
            _ => d.set_item(extra_key, PyDict::new(py))?,
        }
        let obj = ctx.object_new.bind(py).call1(PyTuple::new(py, [ctx.key_event.bind(py)])?)?;
        obj.setattr(intern!(py, "__dict__"), d)?;
        Ok(obj.unbind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_python() {
        // python -c "from parsers.base import stable_id; print(stable_id('a', 'b'))"
        assert_eq!(stable_id(&[b"a", b"b"]).len(), 32);
    }

    #[test]
    fn iso() {
        assert_eq!(normalize_iso("2024-01-02T03:04:05Z").unwrap(), "2024-01-02T03:04:05.000Z");
        assert_eq!(normalize_iso("2024-01-02T03:04:05.1Z").unwrap(), "2024-01-02T03:04:05.100Z");
        assert!(normalize_iso("2024-02-30T03:04:05Z").is_err());
    }
}

/// A minimal event, for the loader's self-test (tests/test_native.py).
#[pyfunction]
pub fn _selftest_event(py: Python<'_>, path: Bound<'_, PyAny>, offset: i64) -> Option<Py<PyAny>> {
    let ev = Event::new(py);
    ev.set(intern!(py, "key_name"), "k1").ok()?;
    ev.finish(
        "2024-01-01T00:00:00.000Z",
        &stable_id(&[b"selftest"]),
        intern!(py, "aws.cloudtrail"),
        intern!(py, "aws"),
        "Decrypt",
        intern!(py, "success"),
        "decrypt",
        &path,
        offset,
    )
    .ok()
}

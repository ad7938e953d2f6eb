//! Fast path for the CloudTrail parser (parsers/cloudtrail.py is the reference).
//!
//! `cloudtrail_line(line, path, offset, redact)`: one NDJSON line holding one plain
//! CloudTrail event -> KeyEvent, or None (the Python parser takes the line).
//! `cloudtrail_document(data, path, redact)`: a whole S3-delivery object
//! `{"Records": [...]}` -> list with, per record, the KeyEvent or the record's raw JSON
//! bytes (the Python parser takes that record), or None when the document is not that
//! shape (the Python parser takes the whole document).
//!
//! Records touching the per-parse alias map (alias references, CreateAlias / UpdateAlias /
//! DeleteAlias) are never handled here, so that state stays exactly Python's.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::fmt;
use std::marker::PhantomData;

use memchr::memchr2;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::common::{clean_ip, normalize_iso, stable_id, Fallback, Fb, CTX};

// ------------------------------------------------------------------ typed record view

/// A JSON string (object keys), borrowed from the input when it has no escapes.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

// The record being read has a value the fast path does not handle (a field of an
// unexpected JSON type, a repeated field): it is still read to its end (so one pass over a
// document validates every record), then handed to Python.
thread_local! {
    static BAD: Cell<bool> = const { Cell::new(false) };
}

#[inline]
fn set_bad() {
    BAD.with(|b| b.set(true));
}

#[inline]
fn take_bad() -> bool {
    BAD.with(|b| b.replace(false))
}

/// Any JSON value, validated as strictly as orjson: numbers must fit an f64, strings must
/// decode (no lone surrogates). Used for every value the fast path does not read, so a
/// document serde_json would skip over but orjson would reject is never taken.
struct Strict;

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Strict;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Strict, E> {
                finite(v).map(|_| Strict)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Strict, E> {
                Ok(Strict)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
                while let Some(Strict) = map.next_key::<Strict>()? {
                    map.next_value::<Strict>()?;
                }
                Ok(Strict)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
                while let Some(Strict) = seq.next_element::<Strict>()? {}
                Ok(Strict)
            }
        }
        d.deserialize_any(V)
    }
}

#[inline]
fn finite<E: de::Error>(v: f64) -> Result<(), E> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(E::custom("number out of range"))
    }
}

/// The visit_* methods of a lenient visitor for anything but the expected JSON type(s):
/// validate and consume the value, flag the record, return the default.
macro_rules! lenient_others {
    (scalars) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            set_bad();
            Ok(Default::default())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            set_bad();
            Ok(Default::default())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            set_bad();
            Ok(Default::default())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            finite(v)?;
            set_bad();
            Ok(Default::default())
        }
    };
    (str) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            set_bad();
            Ok(Default::default())
        }
    };
    (unit) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            set_bad();
            Ok(Default::default())
        }
    };
    (map) => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while let Some(Strict) = map.next_key::<Strict>()? {
                map.next_value::<Strict>()?;
            }
            set_bad();
            Ok(Default::default())
        }
    };
    (seq) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while let Some(Strict) = seq.next_element::<Strict>()? {}
            set_bad();
            Ok(Default::default())
        }
    };
}

/// A string field: Some(string), None for null / absent; any other type flags the record.
#[derive(Default)]
struct S<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for S<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = S<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<S<'de>, E> {
                Ok(S(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<S<'de>, E> {
                Ok(S(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<S<'de>, E> {
                Ok(S(Some(Cow::Owned(v))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<S<'de>, E> {
                Ok(S(None))
            }
            lenient_others!(scalars);
            lenient_others!(map);
            lenient_others!(seq);
        }
        d.deserialize_any(V)
    }
}

/// The value as Python's `_str` sees it: a non-empty string, else None.
#[inline]
fn ne<'b>(s: &'b S<'_>) -> Option<&'b str> {
    match &s.0 {
        Some(c) if !c.is_empty() => Some(c.as_ref()),
        _ => None,
    }
}

/// True when the key is present at all (any value, null included).
#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Strict::deserialize(d)?;
        Ok(Present(true))
    }
}

/// readOnly as `_event` reads it: a bool, or "true"/"false" in any letter case; other
/// scalars are ignored; objects, arrays and non-ASCII strings flag the record.
#[derive(Default)]
struct Ro(Option<bool>);

impl<'de> Deserialize<'de> for Ro {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ro;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Ro, E> {
                Ok(Ro(Some(v)))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Ro, E> {
                Ok(Ro(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Ro, E> {
                Ok(Ro(None))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Ro, E> {
                finite(v)?;
                Ok(Ro(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Ro, E> {
                Ok(Ro(None))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ro, E> {
                if !v.is_ascii() {
                    set_bad();
                    return Ok(Ro(None));
                }
                Ok(Ro(if v.eq_ignore_ascii_case("true") {
                    Some(true)
                } else if v.eq_ignore_ascii_case("false") {
                    Some(false)
                } else {
                    None
                }))
            }
            lenient_others!(map);
            lenient_others!(seq);
        }
        d.deserialize_any(V)
    }
}

/// A list field (None for null / absent); any other type flags the record.
struct L<T>(Option<Vec<T>>);

impl<T> Default for L<T> {
    fn default() -> Self {
        L(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for L<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = L<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<L<T>, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = seq.next_element::<T>()? {
                    v.push(x);
                }
                Ok(L(Some(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<L<T>, E> {
                Ok(L(None))
            }
            lenient_others!(scalars);
            lenient_others!(str);
            lenient_others!(map);
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// An encryption context: string -> string (keys sorted; a repeated key keeps its last
/// value, as in Python). A non-string value flags the record.
#[derive(Default)]
struct Ctx<'a>(Option<BTreeMap<Str<'a>, S<'a>>>);

impl<'de: 'a, 'a> Deserialize<'de> for Ctx<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Ctx<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ctx<'a>, A::Error> {
                let mut m = BTreeMap::new();
                while let Some(k) = map.next_key::<Str<'de>>()? {
                    let v: S<'de> = map.next_value()?;
                    m.insert(k, v);
                }
                Ok(Ctx(Some(m)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Ctx<'a>, E> {
                Ok(Ctx(None))
            }
            lenient_others!(scalars);
            lenient_others!(str);
            lenient_others!(seq);
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// `_KEY_REF_FIELDS` (compared lower-cased); a non-ASCII name counts as a possible match.
fn key_ref_name(k: &str) -> bool {
    if !k.is_ascii() {
        return true;
    }
    match k.len() {
        8 => k.eq_ignore_ascii_case("kmskeyid"),
        9 => k.eq_ignore_ascii_case("kmskeyarn"),
        11 => k.eq_ignore_ascii_case("ssekmskeyid"),
        14 => k.eq_ignore_ascii_case("kmsmasterkeyid"),
        15 => k.eq_ignore_ascii_case("kmsmasterkeyarn"),
        43 => k.eq_ignore_ascii_case("x-amz-server-side-encryption-aws-kms-key-id"),
        _ => false,
    }
}

/// Whether `_scan_key_ref` could find a key reference in a dict value (true = maybe):
/// the value of a field of a dict scanned at `depth`, validated like `Strict`.
struct ScanValue {
    depth: i32,
    key_matches: bool,
}

/// The same for a node scanned at `depth` (`_scan_key_ref(node, depth)`).
struct ScanNodeSeed {
    depth: i32,
}

fn scan_map<'de, A: MapAccess<'de>>(mut map: A, depth: i32) -> Result<bool, A::Error> {
    let mut found = false;
    while let Some(k) = map.next_key::<Str<'de>>()? {
        found |= map.next_value_seed(ScanValue { depth, key_matches: key_ref_name(&k.0) })?;
    }
    Ok(found)
}

fn scan_seq<'de, A: SeqAccess<'de>>(mut seq: A, depth: i32) -> Result<bool, A::Error> {
    let mut found = false;
    let mut i = 0;
    loop {
        if depth > 0 && i < 32 {
            match seq.next_element_seed(ScanNodeSeed { depth: depth - 1 })? {
                Some(f) => found |= f,
                None => return Ok(found),
            }
        } else if seq.next_element::<Strict>()?.is_none() {
            return Ok(found);
        }
        i += 1;
    }
}

fn consume_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<bool, A::Error> {
    while let Some(Strict) = map.next_key::<Strict>()? {
        map.next_value::<Strict>()?;
    }
    Ok(false)
}

fn consume_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<bool, A::Error> {
    while let Some(Strict) = seq.next_element::<Strict>()? {}
    Ok(false)
}

/// visit_* for scalars in a scan: never a key reference by themselves.
macro_rules! scan_scalars {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
            finite(v)?;
            Ok(false)
        }
        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
    };
}

impl<'de> de::DeserializeSeed<'de> for ScanValue {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScanValue {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    scan_scalars!();
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(self.key_matches && !v.is_empty())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        if self.depth > 0 {
            scan_map(map, self.depth - 1)
        } else {
            consume_map(map)
        }
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        if self.depth > 0 {
            scan_seq(seq, self.depth - 1)
        } else {
            consume_seq(seq)
        }
    }
}

impl<'de> de::DeserializeSeed<'de> for ScanNodeSeed {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScanNodeSeed {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    scan_scalars!();
    fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        scan_map(map, self.depth)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        scan_seq(seq, self.depth)
    }
}

/// additionalEventData: whether `_scan_key_ref(value, 2)` could find a key reference.
#[derive(Default)]
struct ScanNode(bool);

impl<'de> Deserialize<'de> for ScanNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de::DeserializeSeed::deserialize(ScanNodeSeed { depth: 2 }, d).map(ScanNode)
    }
}

/// A struct read from a JSON object, keeping the fields named here; every other field is
/// validated with `Strict`. null is the default (all fields absent; wrap in Option to tell
/// it apart); other JSON types and a repeated known field (orjson keeps the last one) flag
/// the record.
macro_rules! lenient_struct {
    ($name:ident { $($field:ident : $ty:ty = $key:literal),* $(,)? }) => {
        lenient_struct!($name scan -1, { $($field : $ty = $key),* });
    };
    ($name:ident scan $depth:literal, { $($field:ident : $ty:ty = $key:literal),* $(,)? }) => {
        #[derive(Default)]
        struct $name<'a> {
            $($field: $ty,)*
            /// An unread field may name a KMS key (`_scan_key_ref` at this depth).
            #[allow(dead_code)]
            key_ref: bool,
            _p: PhantomData<&'a ()>,
        }

        impl<'de: 'a, 'a> Deserialize<'de> for $name<'a> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V<'a>(PhantomData<&'a ()>);
                impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
                    type Value = $name<'a>;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " object"))
                    }
                    fn visit_map<A: MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<$name<'a>, A::Error> {
                        $(let mut $field: Option<$ty> = None;)*
                        let mut key_ref = false;
                        while let Some(k) = map.next_key::<Str<'de>>()? {
                            match k.0.as_ref() {
                                $($key => {
                                    if $field.is_some() {
                                        set_bad();
                                        map.next_value::<Strict>()?;
                                    } else {
                                        $field = Some(map.next_value()?);
                                    }
                                })*
                                _ => {
                                    if $depth < 0 {
                                        map.next_value::<Strict>()?;
                                    } else {
                                        key_ref |= map.next_value_seed(ScanValue {
                                            depth: $depth,
                                            key_matches: key_ref_name(&k.0),
                                        })?;
                                    }
                                }
                            }
                        }
                        Ok($name {
                            $($field: $field.unwrap_or_default(),)*
                            key_ref,
                            _p: PhantomData,
                        })
                    }
                    lenient_others!(scalars);
                    lenient_others!(str);
                    lenient_others!(unit);
                    lenient_others!(seq);
                }
                d.deserialize_any(V(PhantomData))
            }
        }
    };
}

lenient_struct!(Issuer {
    arn: S<'a> = "arn",
    user_name: S<'a> = "userName",
});

lenient_struct!(SessCtx {
    session_issuer: Option<Issuer<'a>> = "sessionIssuer",
});

lenient_struct!(OnBehalf {
    user_id: S<'a> = "userId",
});

lenient_struct!(Ui {
    typ: S<'a> = "type",
    principal_id: S<'a> = "principalId",
    arn: S<'a> = "arn",
    account_id: S<'a> = "accountId",
    access_key_id: S<'a> = "accessKeyId",
    user_name: S<'a> = "userName",
    invoked_by: S<'a> = "invokedBy",
    session_context: Option<SessCtx<'a>> = "sessionContext",
    on_behalf_of: Option<OnBehalf<'a>> = "onBehalfOf",
});

lenient_struct!(Rp scan 4, {
    key_id: S<'a> = "keyId",
    encryption_context: Ctx<'a> = "encryptionContext",
    custom_key_store_id: S<'a> = "customKeyStoreId",
});

lenient_struct!(Re scan 4, {
    key_id: S<'a> = "keyId",
    custom_key_store_id: S<'a> = "customKeyStoreId",
});

lenient_struct!(Sed {
    key_id: S<'a> = "keyId",
});

lenient_struct!(Res {
    arn_upper: S<'a> = "ARN",
    arn: S<'a> = "arn",
});

lenient_struct!(Tls {
    tls_version: S<'a> = "tlsVersion",
});

lenient_struct!(Rec {
    event_version: S<'a> = "eventVersion",
    event_type: S<'a> = "eventType",
    event_category: S<'a> = "eventCategory",
    shared_event_id: S<'a> = "sharedEventID",
    vpc_endpoint_id: S<'a> = "vpcEndpointId",
    event_source: S<'a> = "eventSource",
    event_name: S<'a> = "eventName",
    event_time: S<'a> = "eventTime",
    aws_region: S<'a> = "awsRegion",
    source_ip_address: S<'a> = "sourceIPAddress",
    user_agent: S<'a> = "userAgent",
    request_id: S<'a> = "requestID",
    event_id: S<'a> = "eventID",
    error_code: S<'a> = "errorCode",
    error_message: S<'a> = "errorMessage",
    recipient_account_id: S<'a> = "recipientAccountId",
    user_identity: Option<Ui<'a>> = "userIdentity",
    request_parameters: Option<Rp<'a>> = "requestParameters",
    response_elements: Option<Re<'a>> = "responseElements",
    resources: L<Res<'a>> = "resources",
    service_event_details: Option<Sed<'a>> = "serviceEventDetails",
    read_only: Ro = "readOnly",
    tls_details: Option<Tls<'a>> = "tlsDetails",
    insight_details: Present = "insightDetails",
    additional_event_data: ScanNode = "additionalEventData",
});

/// The records of a document, each with its "flagged" bit (see `BAD`).
struct Records<'a>(Vec<(Rec<'a>, bool)>);

impl<'de: 'a, 'a> Deserialize<'de> for Records<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Records<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of records")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Records<'a>, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                take_bad();
                while let Some(r) = seq.next_element::<Rec<'a>>()? {
                    v.push((r, take_bad()));
                }
                Ok(Records(v))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// A top-level JSON object with a "Records" list (a non-list is an error: not this shape).
struct Doc<'a> {
    records: Option<Records<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Doc<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Doc<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc<'a>, A::Error> {
                let mut records = None;
                while let Some(k) = map.next_key::<Str<'de>>()? {
                    if k.0 == "Records" {
                        if records.is_some() {
                            return Err(de::Error::custom("duplicate Records"));
                        }
                        records = Some(map.next_value::<Records<'a>>()?);
                    } else {
                        map.next_value::<Strict>()?;
                    }
                }
                Ok(Doc { records })
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

// ------------------------------------------------------------------------ tables

fn kms_operation(name: &str) -> Option<&'static str> {
    Some(match name {
        "Encrypt" => "encrypt",
        "Decrypt" => "decrypt",
        "ReEncrypt" => "reencrypt",
        "GenerateDataKey"
        | "GenerateDataKeyWithoutPlaintext"
        | "GenerateDataKeyPair"
        | "GenerateDataKeyPairWithoutPlaintext" => "generate_data_key",
        "Sign" => "sign",
        "Verify" => "verify",
        "GenerateMac" | "VerifyMac" => "mac",
        "DeriveSharedSecret" => "derive",
        "GenerateRandom" => "admin_other",
        "CreateKey" | "ReplicateKey" => "create",
        "EnableKey" => "enable",
        "DisableKey" => "disable",
        "ScheduleKeyDeletion" => "schedule_deletion",
        "CancelKeyDeletion" => "cancel_deletion",
        "DeleteKey" => "destroy",
        "ImportKeyMaterial" => "import",
        "DeleteImportedKeyMaterial" | "DeleteExpiredKeyMaterial" => "destroy",
        "RotateKey" | "RotateKeyOnDemand" => "rotate",
        "EnableKeyRotation" | "DisableKeyRotation" => "update_policy",
        "UpdatePrimaryRegion" | "SynchronizeMultiRegionKey" | "GetParametersForImport" => {
            "admin_other"
        }
        "GetPublicKey" => "describe",
        "UpdateKeyDescription" => "admin_other",
        "PutKeyPolicy" => "update_policy",
        "GetKeyPolicy" => "describe",
        "ListKeyPolicies" => "list",
        "CreateGrant" => "grant",
        "RetireGrant" | "RevokeGrant" => "revoke_grant",
        "ListGrants" | "ListRetirableGrants" => "list",
        "CreateAlias" | "UpdateAlias" | "DeleteAlias" => "admin_other",
        "ListAliases" => "list",
        "TagResource" | "UntagResource" => "admin_other",
        "ListResourceTags" => "list",
        "CreateCustomKeyStore"
        | "ConnectCustomKeyStore"
        | "DisconnectCustomKeyStore"
        | "UpdateCustomKeyStore"
        | "DeleteCustomKeyStore" => "admin_other",
        "DescribeCustomKeyStores" | "DescribeKey" | "GetKeyRotationStatus" => "describe",
        "ListKeyRotations" | "ListKeys" => "list",
        _ => return None,
    })
}

fn generic_operation(name: &str) -> &'static str {
    if name.starts_with("Describe") || name.starts_with("Get") {
        "describe"
    } else if name.starts_with("List") {
        "list"
    } else {
        "admin_other"
    }
}

fn is_special(name: &str) -> bool {
    matches!(
        name,
        "CreateKey"
            | "ReEncrypt"
            | "CreateAlias"
            | "UpdateAlias"
            | "DeleteAlias"
            | "ReplicateKey"
            | "ScheduleKeyDeletion"
            | "EnableKeyRotation"
            | "ImportKeyMaterial"
            | "GetParametersForImport"
            | "DeleteImportedKeyMaterial"
            | "PutKeyPolicy"
            | "CreateGrant"
            | "RetireGrant"
            | "RevokeGrant"
    )
}

const CONTEXT_RESOURCE_KEYS: [&str; 20] = [
    "aws:s3:arn",
    "aws:ebs:id",
    "aws:lambda:FunctionArn",
    "aws:rds:db-id",
    "aws:rds:dbc-id",
    "SecretARN",
    "aws:secretsmanager:arn",
    "PARAMETER_ARN",
    "aws:ssm:parameter",
    "aws:dynamodb:tableName",
    "aws:logs:arn",
    "aws:sqs:arn",
    "aws:sns:topicArn",
    "aws:kinesis:arn",
    "aws:elasticfilesystem:filesystem:id",
    "aws:cloudtrail:arn",
    "aws:backup:backup-vault",
    "aws:redshift:arn",
    "aws:workmail:arn",
    "aws:acm:arn",
];

// ------------------------------------------------------------------ small helpers

fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// `_kms_arn`: (region, account, resource) of a KMS key/alias ARN.
fn kms_arn(arn: &str) -> Option<(&str, &str, &str)> {
    let mut it = arn.splitn(6, ':');
    let p0 = it.next()?;
    let _p1 = it.next()?;
    let p2 = it.next()?;
    let p3 = it.next()?;
    let p4 = it.next()?;
    let p5 = it.next()?;
    if p0 != "arn" || p2 != "kms" {
        return None;
    }
    if !(p5.starts_with("key/") || p5.starts_with("alias/")) || p5.len() < 5 {
        return None;
    }
    Some((p3, p4, p5))
}

/// `_resolve` for references that do not involve the alias map; alias references fall
/// back (they read or write per-parse state).
fn resolve<'b>(
    r: Option<&'b str>,
    account: Option<&str>,
    region: Option<&str>,
    res_keys: &[&'b str],
) -> Fb<Option<Cow<'b, str>>> {
    let Some(r) = r else { return Ok(None) };
    if r.starts_with("arn:") {
        return match kms_arn(r) {
            None => Ok(None),
            Some((_, _, res)) if res.starts_with("key/") => Ok(Some(Cow::Borrowed(r))),
            Some(_) => Err(Fallback),
        };
    }
    if r.starts_with("alias/") {
        return Err(Fallback);
    }
    for k in res_keys {
        if k.len() > r.len() && k.ends_with(r) && k.as_bytes()[k.len() - r.len() - 1] == b'/' {
            return Ok(Some(Cow::Borrowed(k)));
        }
    }
    if let (Some(a), Some(g)) = (account, region) {
        if !r.contains('/') && !r.contains(':') {
            return Ok(Some(Cow::Owned(format!(
                "arn:{}:kms:{}:{}:key/{}",
                partition(g),
                g,
                a,
                r
            ))));
        }
    }
    Ok(None)
}

fn after_last(s: &str, sep: char) -> &str {
    match s.rfind(sep) {
        Some(i) => &s[i + sep.len_utf8()..],
        None => s,
    }
}

struct Principal<'b> {
    user_id: Option<Cow<'b, str>>,
    user_name: Option<&'b str>,
    ptype: Option<&'b str>,
    account: Option<&'b str>,
    session_id: Option<&'b str>,
}

/// `_principal`.
fn principal<'b>(
    py: Python<'_>,
    ui: Option<&'b Ui<'b>>,
    extra: &Bound<'_, PyDict>,
    c: &mut Cache,
) -> Fb<Principal<'b>> {
    let Some(ui) = ui else {
        return Ok(Principal { user_id: None, user_name: None, ptype: None, account: None, session_id: None });
    };
    let mut ptype = ne(&ui.typ);
    let arn = ne(&ui.arn);
    let invoked_by = ne(&ui.invoked_by);
    let acct = ne(&ui.account_id);
    let access_key = ne(&ui.access_key_id);
    let principal_id = ne(&ui.principal_id);
    let user_name_f = ne(&ui.user_name);
    let issuer = ui
        .session_context
        .as_ref()
        .and_then(|s| s.session_issuer.as_ref());
    let mut session_id = None;
    let user_id: Option<Cow<'b, str>>;
    let user_name: Option<&'b str>;
    match ptype {
        Some("AssumedRole") => {
            let issuer_arn = issuer.and_then(|i| ne(&i.arn));
            if let Some(ia) = issuer_arn {
                extra.set_item(intern!(py, "aws.cloudtrail.session_issuer_arn"), c.s(py, ia))?;
            }
            user_id = issuer_arn.or(arn).or(principal_id).or(user_name_f).map(Cow::Borrowed);
            user_name = match arn {
                Some(a) if a.contains('/') => Some(after_last(a, '/')),
                _ => user_name_f.or(principal_id.map(|p| after_last(p, ':'))),
            };
            session_id = access_key;
        }
        Some("IAMUser") => {
            user_id = arn.or(principal_id).map(Cow::Borrowed);
            user_name = user_name_f;
        }
        Some("Root") => {
            user_id = match arn {
                Some(a) => Some(Cow::Borrowed(a)),
                None => acct.map(|a| Cow::Owned(format!("arn:aws:iam::{}:root", a))),
            };
            user_name = Some(user_name_f.unwrap_or("root"));
        }
        Some("FederatedUser") => {
            user_id = arn.or(principal_id).map(Cow::Borrowed);
            user_name = match arn {
                Some(a) if a.contains('/') => Some(after_last(a, '/')),
                _ => issuer.and_then(|i| ne(&i.user_name)),
            };
            session_id = access_key;
        }
        Some("AWSService") | None if ptype.is_some() || invoked_by.is_some() => {
            ptype = Some("AWSService");
            let u = invoked_by.unwrap_or("AWS Internal");
            user_id = Some(Cow::Borrowed(u));
            user_name = Some(u);
        }
        Some("AWSAccount") => {
            user_id = acct.or(principal_id).map(Cow::Borrowed);
            user_name = principal_id;
        }
        Some("IdentityCenterUser") => {
            let behalf = ui.on_behalf_of.as_ref().and_then(|b| ne(&b.user_id));
            user_id = behalf.or(principal_id).map(Cow::Borrowed);
            user_name = user_name_f;
        }
        _ => {
            user_id = arn.or(principal_id).or(user_name_f).map(Cow::Borrowed);
            user_name = user_name_f;
        }
    }
    if let Some(a) = arn {
        if user_id.as_deref() != Some(a) {
            extra.set_item(intern!(py, "aws.cloudtrail.user_arn"), c.s(py, a))?;
        }
    }
    if let Some(i) = invoked_by {
        extra.set_item(intern!(py, "aws.cloudtrail.invoked_by"), c.s(py, i))?;
    }
    if let Some(k) = access_key {
        extra.set_item(intern!(py, "aws.cloudtrail.access_key_id"), c.s(py, k))?;
    }
    Ok(Principal { user_id, user_name, ptype, account: acct, session_id })
}

/// `_context(ctx, None, ...)`: sorted context keys into extra, resource from the
/// best-ranked known key with a non-empty value.
fn context<'b>(
    py: Python<'_>,
    ctx: &'b BTreeMap<Str<'b>, S<'b>>,
    redact: bool,
    extra: &Bound<'_, PyDict>,
    c: &mut Cache,
) -> Fb<Option<&'b str>> {
    if ctx.is_empty() {
        return Ok(None);
    }
    let keys = PyList::new(py, ctx.keys().map(|k| c.s(py, &k.0)))?;
    extra.set_item(intern!(py, "aws.cloudtrail.encryption_context_keys"), keys)?;
    if redact {
        return Ok(None);
    }
    let mut best = CONTEXT_RESOURCE_KEYS.len();
    let mut resource = None;
    for (k, v) in ctx.iter() {
        let rank = CONTEXT_RESOURCE_KEYS.iter().position(|x| *x == k.0).unwrap_or(best);
        if rank < best {
            if let Some(v) = ne(v) {
                best = rank;
                resource = Some(v);
            }
        }
    }
    Ok(resource)
}

// ------------------------------------------------------------------------- events

/// FxHash (rustc's): plenty for a per-parse string cache.
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            h = (h.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
        for &b in chunks.remainder() {
            h = (h.rotate_left(5) ^ b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
        self.0 = h;
    }
    #[inline]
    fn write_u8(&mut self, b: u8) {
        self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

const CACHE_MAX: usize = 8192;

/// Python strings already built during this parse: accounts, regions, key ARNs, principals
/// and user agents repeat across records; equal values, one object.
#[derive(Default)]
struct Cache {
    strs: HashMap<Box<str>, Py<PyString>, BuildHasherDefault<Fx>>,
}

impl Cache {
    #[inline]
    fn s<'py>(&mut self, py: Python<'py>, v: &str) -> Bound<'py, PyString> {
        if let Some(o) = self.strs.get(v) {
            return o.bind(py).clone();
        }
        let o = PyString::new(py, v);
        if self.strs.len() < CACHE_MAX {
            self.strs.insert(v.into(), o.clone().unbind());
        }
        o
    }
}

/// Set `key` when the value is present (the template already holds None).
#[inline]
fn put(d: &Bound<'_, PyDict>, key: &Bound<'_, PyString>, v: Option<&str>, c: &mut Cache) -> Fb<()> {
    if let Some(v) = v {
        d.set_item(key, c.s(d.py(), v))?;
    }
    Ok(())
}

/// Every KeyEvent attribute (parsers.schema.KeyEvent) -> None: copied per event (a dict
/// copy is much cheaper than growing a fresh dict to 46 entries).
static TEMPLATE: PyOnceLock<Py<PyDict>> = PyOnceLock::new();

const ATTRS: [&str; 46] = [
    "timestamp", "event_id", "dataset", "provider", "action", "outcome", "operation",
    "operation_class", "log_file_path", "log_offset", "category", "type", "error_code",
    "error_message", "key_uid", "key_destination_uid", "key_provider", "key_kind",
    "key_account", "key_region", "key_vault", "key_name", "key_alias", "key_version",
    "key_spec", "key_usage", "key_origin", "key_store", "key_rotation_period_days",
    "key_expires_at", "key_deletion_date", "user_id", "user_name", "principal_type",
    "principal_account", "source_ip", "source_address", "user_agent", "cloud_provider",
    "cloud_account_id", "cloud_region", "session_id", "request_id", "resource", "original",
    "extra",
];

fn template(py: Python<'_>) -> Fb<&Bound<'_, PyDict>> {
    let t = TEMPLATE.get_or_try_init(py, || -> PyResult<Py<PyDict>> {
        let d = PyDict::new(py);
        for a in ATTRS {
            d.set_item(PyString::intern(py, a), py.None())?;
        }
        Ok(d.unbind())
    })?;
    Ok(t.bind(py))
}

/// What parsers.schema derives from an operation: its string, class, ECS category / type.
struct OpMeta {
    op: Py<PyString>,
    class: Py<PyAny>,
    category: Py<PyList>,
    typ: Py<PyList>,
}

const OPERATIONS: [&str; 22] = [
    "encrypt", "decrypt", "reencrypt", "generate_data_key", "sign", "verify", "mac", "derive",
    "admin_other", "create", "enable", "disable", "schedule_deletion", "cancel_deletion",
    "destroy", "import", "rotate", "update_policy", "describe", "list", "grant",
    "revoke_grant",
];

static OPS: PyOnceLock<Vec<OpMeta>> = PyOnceLock::new();

fn op_meta<'a>(py: Python<'a>, operation: &str) -> Fb<&'a OpMeta> {
    let all = OPS.get_or_try_init(py, || -> Fb<Vec<OpMeta>> {
        let ctx = CTX.get(py).ok_or(Fallback)?;
        let mut v = Vec::with_capacity(OPERATIONS.len());
        for name in OPERATIONS {
            let op = PyString::intern(py, name);
            let class = match ctx.operation_class.bind(py).get_item(&op)? {
                Some(c) => c,
                None => PyString::intern(py, "other").into_any(),
            };
            let category = ctx.ecs_category.bind(py).get_item(&class)?.ok_or(Fallback)?;
            let typ = match ctx.ecs_type.bind(py).get_item(&op)? {
                Some(t) => t,
                None => ctx.info.bind(py).clone(),
            };
            v.push(OpMeta {
                op: op.unbind(),
                class: class.unbind(),
                category: category.cast_into::<PyList>().map_err(|_| Fallback)?.unbind(),
                typ: typ.cast_into::<PyList>().map_err(|_| Fallback)?.unbind(),
            });
        }
        Ok(v)
    })?;
    let i = OPERATIONS.iter().position(|x| *x == operation).ok_or(Fallback)?;
    Ok(&all[i])
}

/// A fresh copy of a list of (immutable) strings.
fn list_copy<'py>(l: &Bound<'py, PyList>) -> Bound<'py, PyList> {
    l.get_slice(0, l.len())
}

/// parsers.schema.new_event's derived fields and the KeyEvent itself, from a dict that
/// already holds every optional attribute.
#[allow(clippy::too_many_arguments)]
fn finish(
    py: Python<'_>,
    d: Bound<'_, PyDict>,
    c: &mut Cache,
    ts: &str,
    eid: &str,
    action: &str,
    outcome: &Bound<'_, PyString>,
    operation: &str,
    path: &Bound<'_, PyAny>,
    offset: i64,
) -> Fb<Py<PyAny>> {
    let ctx = CTX.get(py).ok_or(Fallback)?;
    let m = op_meta(py, operation)?;
    d.set_item(intern!(py, "timestamp"), ts)?;
    d.set_item(intern!(py, "event_id"), eid)?;
    d.set_item(intern!(py, "dataset"), intern!(py, "aws.cloudtrail"))?;
    d.set_item(intern!(py, "provider"), intern!(py, "kms.amazonaws.com"))?;
    d.set_item(intern!(py, "action"), c.s(py, action))?;
    d.set_item(intern!(py, "outcome"), outcome)?;
    d.set_item(intern!(py, "operation"), m.op.bind(py))?;
    d.set_item(intern!(py, "operation_class"), m.class.bind(py))?;
    d.set_item(intern!(py, "log_file_path"), path)?;
    d.set_item(intern!(py, "log_offset"), offset)?;
    d.set_item(intern!(py, "category"), list_copy(m.category.bind(py)))?;
    d.set_item(intern!(py, "type"), list_copy(m.typ.bind(py)))?;
    let obj = ctx.object_new.bind(py).call1((ctx.key_event.bind(py),))?;
    obj.setattr(intern!(py, "__dict__"), d)?;
    Ok(obj.unbind())
}

static SKIPPED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// parsers.base.Skipped(reason, path, offset).
fn skipped(py: Python<'_>, reason: &Bound<'_, PyString>, path: &Bound<'_, PyAny>, offset: i64) -> Fb<Py<PyAny>> {
    let cls = SKIPPED.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py.import("parsers.base")?.getattr("Skipped")?.unbind())
    })?;
    Ok(cls.bind(py).call1((reason, path, offset))?.unbind())
}

/// One CloudTrail event record -> KeyEvent, exactly as `CloudTrailParser._event` builds
/// it (group/stream None), or Fallback.
fn build(
    py: Python<'_>,
    r: &Rec<'_>,
    path: &Bound<'_, PyAny>,
    offset: i64,
    redact: bool,
    c: &mut Cache,
) -> Fb<Py<PyAny>> {
    let name = ne(&r.event_name).ok_or(Fallback)?;
    if r.insight_details.0 || ne(&r.event_type) == Some("AwsCloudTrailInsight") {
        return skipped(py, intern!(py, "insight_event"), path, offset);
    }
    // VPC endpoint network activity: its own event kind, built by Python
    // (CloudTrailParser._network_activity).
    if ne(&r.event_type) == Some("AwsVpceEvent") {
        return Err(Fallback);
    }
    let source = ne(&r.event_source).ok_or(Fallback)?;
    if source == "cloudtrail.amazonaws.com"
        && matches!(name, "StopLogging" | "DeleteTrail" | "PutEventSelectors")
    {
        // Trail changes that can stop KMS logging are events: Python builds them
        // (TRAIL_LOGGING_EVENTS in parsers/cloudtrail.py).
        return Err(Fallback);
    }
    if source != "kms.amazonaws.com" {
        // Non-KMS events are skipped unless they name a KMS key (Python builds those).
        let rp = r.request_parameters.as_ref();
        let maybe_key = rp.is_some_and(|p| {
            p.key_ref
                || p.encryption_context
                    .0
                    .as_ref()
                    .is_some_and(|c| c.iter().any(|(k, v)| key_ref_name(&k.0) && ne(v).is_some()))
        }) || r.response_elements.as_ref().is_some_and(|e| e.key_ref)
            || r.additional_event_data.0;
        if maybe_key {
            return Err(Fallback);
        }
        return skipped(py, intern!(py, "non_kms_event"), path, offset);
    }
    if is_special(name) {
        return Err(Fallback);
    }
    let event_time = r.event_time.0.as_deref().ok_or(Fallback)?;
    let ts = normalize_iso(event_time)?;
    let event_id = ne(&r.event_id).ok_or(Fallback)?;

    let ui = r.user_identity.as_ref();
    let recipient = ne(&r.recipient_account_id);
    let account = recipient.or_else(|| ui.and_then(|u| ne(&u.account_id)));
    let region = ne(&r.aws_region);

    let mut res_keys: Vec<&str> = Vec::new();
    if let Some(list) = &r.resources.0 {
        for o in list {
            let arn = ne(&o.arn_upper).or_else(|| o.arn.0.as_deref());
            if let Some(a) = arn {
                if a.contains(":key/") && kms_arn(a).is_some() {
                    res_keys.push(a);
                }
            }
        }
    }

    let (outcome, error_code, error_message) = match ne(&r.error_code) {
        Some(code) => (intern!(py, "failure"), Some(code), ne(&r.error_message)),
        None => (intern!(py, "success"), None, None),
    };

    let operation = kms_operation(name).unwrap_or_else(|| generic_operation(name));
    let rp = r.request_parameters.as_ref();
    let re = r.response_elements.as_ref();
    let extra = PyDict::new(py);

    let mut kref = rp.and_then(|p| ne(&p.key_id));
    if kref.is_none() {
        kref = r.service_event_details.as_ref().and_then(|s| ne(&s.key_id));
        if kref.is_none() && res_keys.is_empty() {
            kref = re.and_then(|e| ne(&e.key_id));
        }
    }
    let mut uid = resolve(kref, account, region, &res_keys)?;
    if uid.is_none() {
        if let Some(k) = res_keys.first() {
            uid = Some(Cow::Borrowed(k));
        } else if let Some(k) = kref {
            extra.set_item(intern!(py, "aws.cloudtrail.key_ref"), c.s(py, k))?;
        }
    }
    let store = rp
        .and_then(|p| ne(&p.custom_key_store_id))
        .or_else(|| re.and_then(|e| ne(&e.custom_key_store_id)));
    let mut resource = None;
    if let Some(ctx) = rp.and_then(|p| p.encryption_context.0.as_ref()) {
        resource = context(py, ctx, redact, &extra, c)?;
    }

    let (key_region, key_account) = match uid.as_deref().and_then(kms_arn) {
        Some((g, a, _)) => (Some(g), Some(a)),
        None => (None, None),
    };

    let p = principal(py, ui, &extra, c)?;
    let src_addr = ne(&r.source_ip_address);
    let src_ip = match src_addr {
        Some(a) => clean_ip(a)?,
        None => None,
    };

    for (v, k) in [
        (&r.event_version, intern!(py, "aws.cloudtrail.event_version")),
        (&r.event_type, intern!(py, "aws.cloudtrail.event_type")),
        (&r.event_category, intern!(py, "aws.cloudtrail.event_category")),
        (&r.shared_event_id, intern!(py, "aws.cloudtrail.shared_event_id")),
        (&r.vpc_endpoint_id, intern!(py, "aws.cloudtrail.vpc_endpoint_id")),
    ] {
        if let Some(s) = ne(v) {
            extra.set_item(k, c.s(py, s))?;
        }
    }
    if let Ro(Some(b)) = r.read_only {
        extra.set_item(intern!(py, "aws.cloudtrail.read_only"), b)?;
    }
    if let Some(t) = r.tls_details.as_ref().and_then(|t| ne(&t.tls_version)) {
        extra.set_item(intern!(py, "aws.cloudtrail.tls_version"), c.s(py, t))?;
    }

    let eid = stable_id(&[
        b"aws.cloudtrail",
        event_id.as_bytes(),
        recipient.unwrap_or("").as_bytes(),
    ]);

    // Every KeyEvent attribute None, then the values this record has (KeyEvent(...) in
    // the reference fills all of them).
    let d = template(py)?.copy()?;
    if error_code.is_some() {
        put(&d, intern!(py, "error_code"), error_code, c)?;
        put(&d, intern!(py, "error_message"), error_message, c)?;
    }
    put(&d, intern!(py, "key_uid"), uid.as_deref(), c)?;
    d.set_item(intern!(py, "key_provider"), intern!(py, "aws_kms"))?;
    d.set_item(intern!(py, "key_kind"), intern!(py, "key"))?;
    put(&d, intern!(py, "key_account"), key_account, c)?;
    put(&d, intern!(py, "key_region"), key_region, c)?;
    put(&d, intern!(py, "key_store"), store, c)?;
    put(&d, intern!(py, "user_id"), p.user_id.as_deref(), c)?;
    put(&d, intern!(py, "user_name"), p.user_name, c)?;
    put(&d, intern!(py, "principal_type"), p.ptype, c)?;
    put(&d, intern!(py, "principal_account"), p.account, c)?;
    put(&d, intern!(py, "source_ip"), src_ip.as_deref(), c)?;
    put(&d, intern!(py, "source_address"), src_addr, c)?;
    put(&d, intern!(py, "user_agent"), ne(&r.user_agent), c)?;
    d.set_item(intern!(py, "cloud_provider"), intern!(py, "aws"))?;
    put(&d, intern!(py, "cloud_account_id"), account, c)?;
    put(&d, intern!(py, "cloud_region"), region, c)?;
    put(&d, intern!(py, "session_id"), p.session_id, c)?;
    if let Some(rid) = ne(&r.request_id) {
        d.set_item(intern!(py, "request_id"), rid)?;
    }
    put(&d, intern!(py, "resource"), resource, c)?;
    d.set_item(intern!(py, "extra"), extra)?;
    finish(py, d, c, &ts, &eid, name, outcome, operation, path, offset)
}

/// One record's JSON text -> the record and whether it was flagged (see `BAD`), or None
/// when the text is not strictly valid JSON.
fn parse_rec(s: &str) -> Option<(Rec<'_>, bool)> {
    take_bad();
    let r = serde_json::from_str::<Rec<'_>>(s);
    let bad = take_bad();
    r.ok().map(|r| (r, bad))
}

/// NDJSON lines of one parse: `event(line, offset)` -> KeyEvent for a line holding one
/// plain CloudTrail event, else None (the Python parser takes the line).
#[pyclass(module = "parsers._native")]
struct CloudTrailLines {
    path: Py<PyAny>,
    redact: bool,
    cache: Cache,
}

#[pymethods]
impl CloudTrailLines {
    #[new]
    fn new(path: Py<PyAny>, redact: bool) -> Self {
        CloudTrailLines { path, redact, cache: Cache::default() }
    }

    fn event(&mut self, py: Python<'_>, line: &[u8], offset: i64) -> Option<Py<PyAny>> {
        let s = std::str::from_utf8(line).ok()?;
        let (rec, bad) = parse_rec(s)?;
        if bad {
            return None;
        }
        let path = self.path.bind(py).clone();
        build(py, &rec, &path, offset, self.redact, &mut self.cache).ok()
    }
}

/// The records of one `{"Records": [...]}` document, in order: a KeyEvent, or
/// `(index, raw record JSON bytes)` for the Python parser.
#[pyclass(module = "parsers._native")]
struct CloudTrailRecords {
    // Declared before `_data`: dropped first (the records borrow from its buffer).
    items: std::iter::Enumerate<std::vec::IntoIter<(Rec<'static>, bool)>>,
    spans: Option<Vec<(usize, usize)>>,
    text: &'static str,
    cache: Cache,
    path: Py<PyAny>,
    redact: bool,
    _data: Py<PyBytes>,
}

#[pymethods]
impl CloudTrailRecords {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let Some((i, (rec, bad))) = self.items.next() else { return Ok(None) };
        if !bad {
            let path = self.path.bind(py).clone();
            if let Ok(ev) = build(py, &rec, &path, i as i64, self.redact, &mut self.cache) {
                return Ok(Some(ev));
            }
        }
        if self.spans.is_none() {
            self.spans = record_spans(self.text);
        }
        let (a, b) = self
            .spans
            .as_ref()
            .and_then(|sp| sp.get(i).copied())
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("record span not found"))?;
        let raw = PyBytes::new(py, &self.text.as_bytes()[a..b]);
        Ok(Some((i, raw).into_pyobject(py)?.into_any().unbind()))
    }
}

/// A whole `{"Records": [...]}` document -> iterator of its records (see
/// `CloudTrailRecords`), or None when the document is not that shape or not strictly valid
/// JSON (the Python parser then reads it its own way).
#[pyfunction]
fn cloudtrail_document(
    data: Bound<'_, PyBytes>,
    path: Py<PyAny>,
    redact: bool,
) -> Option<CloudTrailRecords> {
    // SAFETY: a bytes object is immutable, and `CloudTrailRecords._data` keeps it alive
    // for as long as the records and `text` borrowing from its buffer.
    let bytes: &'static [u8] =
        unsafe { std::mem::transmute::<&[u8], &'static [u8]>(data.as_bytes()) };
    let text = std::str::from_utf8(bytes).ok()?;
    take_bad();
    let doc = serde_json::from_str::<Doc<'static>>(text).ok()?;
    let records = doc.records?;
    Some(CloudTrailRecords {
        items: records.0.into_iter().enumerate(),
        spans: None,
        text,
        cache: Cache::default(),
        path,
        redact,
        _data: data.unbind(),
    })
}

// ------------------------------------------------ raw record spans (fallback records only)

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// `b[i]` is an opening quote: the index after the closing one.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        let k = j + memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[k] == b'\\' {
            j = k + 2;
        } else {
            return Some(k + 1);
        }
    }
}

/// The index after the JSON value starting at `b[i]` (the text is known to be valid).
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *b.get(j)? {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                j += 1;
            }
            Some(j)
        }
    }
}

/// Byte spans of the elements of the top-level "Records" list of a document the serde
/// pass accepted (valid JSON, one "Records" key).
fn record_spans(s: &str) -> Option<Vec<(usize, usize)>> {
    let b = s.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(b, i);
        match *b.get(i)? {
            b',' => {
                i += 1;
                continue;
            }
            b'"' => {}
            _ => return None,
        }
        let kend = skip_string(b, i)?;
        let key = &s[i..kend];
        let is_records = if key.contains('\\') {
            serde_json::from_str::<String>(key).ok()? == "Records"
        } else {
            key == "\"Records\""
        };
        i = skip_ws(b, kend);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        if !is_records {
            i = skip_value(b, i)?;
            continue;
        }
        if b.get(i) != Some(&b'[') {
            return None;
        }
        i += 1;
        let mut spans = Vec::new();
        loop {
            i = skip_ws(b, i);
            match *b.get(i)? {
                b']' => return Some(spans),
                b',' => {
                    i += 1;
                    continue;
                }
                _ => {}
            }
            let end = skip_value(b, i)?;
            spans.push((i, end));
            i = end;
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CloudTrailLines>()?;
    m.add_class::<CloudTrailRecords>()?;
    m.add_function(wrap_pyfunction!(cloudtrail_document, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        assert_eq!(kms_arn("arn:aws:kms:r:a:key/x"), Some(("r", "a", "key/x")));
        assert_eq!(kms_arn("arn:aws:kms:r:a:key/"), None);
        assert_eq!(kms_arn("arn:aws:s3:r:a:key/x"), None);
    }

    #[test]
    fn spans() {
        let s = r#" {"a": [1, "]"], "Rec\u006frds" : [ {"x": "}\""} , 2,"s" ] }"#;
        let sp = record_spans(s).unwrap();
        let got: Vec<&str> = sp.iter().map(|(a, b)| &s[*a..*b]).collect();
        assert_eq!(got, vec![r#"{"x": "}\""}"#, "2", "\"s\""]);
    }
}

//! keytrail_native: compiled fast paths for the hottest line parsers.
//!
//! The Python parsers in `parsers/` are the reference implementation. Each function here
//! handles the common record shapes of one family and returns `None` for anything it is
//! not certain about; the Python parser then handles that record. Differential tests
//! (tests/test_native_*.py) assert that every event built here equals the Python one.

use pyo3::prelude::*;

mod common;
mod cloudtrail;
mod keyvault;
mod vault;

#[pymodule(gil_used = true)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(common::init, m)?)?;
    m.add_function(wrap_pyfunction!(common::stable_id_py, m)?)?;
    m.add_function(wrap_pyfunction!(common::normalize_iso_py, m)?)?;
    m.add_function(wrap_pyfunction!(common::clean_ip_py, m)?)?;
    m.add_function(wrap_pyfunction!(common::_selftest_event, m)?)?;
    cloudtrail::register(m)?;
    keyvault::register(m)?;
    vault::register(m)?;
    Ok(())
}

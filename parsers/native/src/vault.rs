//! Fast path for the vault parser (see parsers/ for the reference implementation).

use pyo3::prelude::*;

pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}

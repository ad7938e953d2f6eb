"""Client address normalization shared by parsers: source.ip must be a valid IP."""

from __future__ import annotations

import ipaddress
from functools import lru_cache


@lru_cache(maxsize=65536)
def clean_ip(value: str | None) -> str | None:
    """A valid IPv4/IPv6 address from `value` ('1.2.3.4', '1.2.3.4:5', '[::1]:5'), else None.

    Service names such as 'AWS Internal' or 'kms.amazonaws.com' are not IPs: callers keep
    them in source.address.
    """
    if not value:
        return None
    v = value.strip()
    if v.startswith("[") and "]" in v:
        v = v[1 : v.index("]")]
    elif v.count(":") == 1 and "." in v:
        v = v.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        return None

"""Money on the HTTP APIs: ISO-4217 currency codes and prices as decimal strings.

The event contract only fixes the *shape* of a code (three capital letters) so that old events
stay readable if the standard changes; the HTTP APIs that take new input check it against the list
of active codes below (ISO 4217 list one, funds and precious metals excluded), so "XYZ" is a 422
naming the field instead of a product nobody can pay for.

Prices travel as decimal strings ("19.99"): a JSON number would pass through binary floating point
in many clients. :data:`DecimalString` refuses anything else, exactly as its OpenAPI schema says.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from contracts.events import Money

ACTIVE_CODES: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP
    BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP
    GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR
    KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK
    MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR
    SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS
    UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
    """.split()
)


def _active(code: str) -> str:
    if code not in ACTIVE_CODES:
        raise ValueError(f"{code} is not an active ISO-4217 currency code")
    return code


IsoCurrency = Annotated[
    str,
    Field(pattern=r"^[A-Z]{3}$", examples=["EUR"], description="ISO-4217 code, e.g. EUR"),
    AfterValidator(_active),
]


_DECIMAL = re.compile(r"^[0-9]{1,8}(\.[0-9]{1,4})?$")
DECIMAL_PATTERN = _DECIMAL.pattern


def _decimal_string(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError('must be a decimal string such as "19.99", not a JSON number')
    if not _DECIMAL.match(value):
        raise ValueError('must be a decimal string such as "19.99" (up to 8 digits, 4 decimals)')
    return value


DecimalString = Annotated[
    Money,
    BeforeValidator(_decimal_string),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DECIMAL_PATTERN,
            "description": "a non-negative decimal as a string",
            "examples": ["19.99"],
        }
    ),
]

"""Deterministic synthetic Kumulos users, built on demand from ``(seed, index)``.

Users are never all held in memory: each one is derived from a keyed BLAKE2b digest of its
index, so any user can be rebuilt at random in about ten microseconds and the emulator can
serve hundreds of thousands of them. Users are produced directly as compact JSON text (the hot
path when serving pages); :meth:`UserFactory.user` parses that text for the rare dict access.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

#: Every generated timestamp lies within ``SPAN_DAYS`` before this fixed date, so output is
#: reproducible whatever day the emulator runs.
REFERENCE_DATE = datetime(2026, 11, 1, tzinfo=timezone.utc)
SPAN_DAYS = 120
_SPAN = SPAN_DAYS * 86400
_WINDOW_START = REFERENCE_DATE - timedelta(days=SPAN_DAYS)
# Timestamp text = hour prefix + "MM:SS+00:00", two list look-ups instead of a datetime call.
_HOUR_PREFIX = [
    (_WINDOW_START + timedelta(hours=h)).strftime("%Y-%m-%dT%H:") for h in range(SPAN_DAYS * 24 + 1)
]
_MIN_SEC = [f"{s // 60:02d}:{s % 60:02d}+00:00" for s in range(3600)]

_VARIANT_MASK = 4095  # 4096 attribute variants per seed
#: Share of anonymous (system-created, uuid-named) users.
ANONYMOUS_SHARE = 0.05

_FIRST = ["Mark", "Anna", "Lucas", "Sofia", "Noah", "Mia", "Liam", "Emma", "José", "Zoë", "Oliver"]
_FIRST += ["Isla", "Leo", "Zara", "Omar", "Yuki", "Inès", "Łukasz", "Priya", "Chen"]
_LAST = ["Smith", "Jones", "García", "Müller", "Rossi", "Silva", "Kim", "Nguyen", "Brown"]
_LAST += ["Dubois", "Novak", "Sato", "O'Neill", "Kowalski", "Patel", "Andersson"]
_PLANS = ["free", "basic", "pro", "enterprise"]
_CITIES = [("London", "GB"), ("Berlin", "DE"), ("Paris", "FR"), ("Austin", "US"), ("Osaka", "JP")]
_INTERESTS = ["sport", "music", "travel", "food", "tech", "fashion", "games", "news"]
_IOS_VERSIONS = ["15.8", "16.7", "17.6", "18.1", "18.2"]
_IOS_DEVICES = [
    ("iPhone12,1", "iPhone 11"),
    ("iPhone14,5", "iPhone 13"),
    ("iPhone15,2", "iPhone 14 Pro"),
    ("iPhone16,1", "iPhone 15 Pro"),
    ("iPad13,18", "iPad (10th generation)"),
]
_ANDROID_VERSIONS = ["11", "12", "13", "14", "15"]
_ANDROID_DEVICES = [
    ("mia2", "Xiaomi Mi A2"),
    ("SM-G991B", "Samsung Galaxy S21"),
    ("Pixel 7", "Google Pixel 7"),
    ("SM-A536B", "Samsung Galaxy A53"),
    ("CPH2451", "OnePlus 11"),
]
_SDKS = [("Native", "4.1.0"), ("Flutter", "3.2.1"), ("ReactNative", "2.5.0")]
_SDKS += [("Xamarin", "2.2.2"), ("Cordova", "5.0.3"), ("Unity", "1.4.0")]
_APP_VERSIONS = ["1.0.0", "1.2.3", "2.0.0", "2.1.4", "3.0.0", "3.1.1"]
_PLACES = [
    ("GB", "Europe/London", "en-GB"),
    ("US", "America/New_York", "en-US"),
    ("US", "America/Los_Angeles", "en-US"),
    ("DE", "Europe/Berlin", "de-DE"),
    ("FR", "Europe/Paris", "fr-FR"),
    ("ES", "Europe/Madrid", "es-ES"),
    ("BR", "America/Sao_Paulo", "pt-BR"),
    ("JP", "Asia/Tokyo", "ja-JP"),
    ("IN", "Asia/Kolkata", "en-IN"),
    ("DZ", "Africa/Algiers", "fr-DZ"),
    ("AU", "Australia/Sydney", "en-AU"),
    ("PL", "Europe/Warsaw", "pl-PL"),
]


_OS = [("Android", _ANDROID_VERSIONS, _ANDROID_DEVICES), ("iOS", _IOS_VERSIONS, _IOS_DEVICES)]
# Install JSON is assembled from pre-rendered runs of fields, indexed by os (0 Android, 1 iOS):
# head = os, osVersion, sdkType, sdkVersion (30 per os); tail = appVersion, place, device (360 per os).
_INSTALL_HEAD = [
    f',"os":"{name}","osVersion":"{version}","sdkType":"{sdk}","sdkVersion":"{sdk_version}",'
    for name, versions, _ in _OS
    for version in versions
    for sdk, sdk_version in _SDKS
]
_INSTALL_TAIL = [
    f'"appVersion":"{app}","countryIsoCode":"{country}","timezone":"{tz}","locale":"{locale}",'
    f'"deviceModel":"{model}","deviceName":"{device}"'
    for _, _, devices in _OS
    for app in _APP_VERSIONS
    for country, tz, locale in _PLACES
    for model, device in devices
]


def _ts(t: int) -> str:
    """ISO-8601 text for ``t`` seconds after the start of the generated window."""
    return _HOUR_PREFIX[t // 3600] + _MIN_SEC[t % 3600]


def _uuid4_text(raw: bytes) -> str:
    """Format 16 random bytes as a version-4 UUID string."""
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def named_identifier(index: int) -> str:
    """Identifier of the non-anonymous user at ``index`` (``user-000001`` for index 0)."""
    return f"user-{index + 1:06d}"


def parse_named_identifier(identifier: str) -> int | None:
    """Index encoded in a ``user-NNNNNN`` identifier, or None when it is not one."""
    digits = identifier[5:]
    if not identifier.startswith("user-") or not (digits.isascii() and digits.isdigit()):
        return None
    index = int(digits) - 1
    return index if index >= 0 and named_identifier(index) == identifier else None


def json_text(value: Any) -> str:
    """Compact ASCII JSON text, the same shape as the generated user fragments.

    ASCII (non-ASCII characters as ``\\uXXXX`` escapes) keeps joining and encoding a page of
    a thousand users a plain memory copy."""
    return json.dumps(value, separators=(",", ":"))


#: JSON string literal of a str, ASCII-escaped like :func:`json_text` (C-accelerated).
_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii


class UserFactory:
    """Builds the users of one seed; stateless apart from the seed, so safe across threads."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        key = hashlib.blake2b(f"kumulos-emulator/{seed}".encode(), digest_size=32).digest()
        self._user_hash = hashlib.blake2b(digest_size=64, key=key, person=b"user")
        self._install_hash = hashlib.blake2b(digest_size=48, key=key, person=b"install")
        # Attribute objects come from a pool of variants (only the email's number is per user):
        # rendering them per user would double the cost of a users page.
        variant_hash = hashlib.blake2b(digest_size=64, key=key, person=b"attributes")
        self._attribute_variants = []
        for variant in range(_VARIANT_MASK + 1):
            h = variant_hash.copy()
            h.update(variant.to_bytes(8, "little"))
            self._attribute_variants.append(self._attribute_variant(h.digest()))

    def anonymous_identifiers(self, count: int) -> dict[int, str]:
        """Pick the anonymous users among the first ``count`` indices: index -> uuid identifier."""
        rng = random.Random(self.seed)
        draw, bits = rng.random, rng.getrandbits
        return {
            i: _uuid4_text(bits(128).to_bytes(16, "little")) for i in range(count) if draw() < ANONYMOUS_SHARE
        }

    def fragment(self, index: int, identifier: str, anonymous: bool) -> str:
        """Compact JSON text of the generated user at ``index``."""
        h = self._user_hash.copy()
        h.update(index.to_bytes(8, "little"))
        d = h.digest()
        created = int.from_bytes(d[1:4], "little") % _SPAN
        first = min(created + d[4] * 14, _SPAN)  # first activity within an hour of sign-up
        last = first + ((_SPAN - first) * int.from_bytes(d[5:7], "little") >> 16)
        updated = created + ((_SPAN - created) * int.from_bytes(d[7:9], "little") >> 16)
        if d[13] < (218 if anonymous else 26):  # most named users have attributes, most anonymous none
            attributes = "{}"
        else:
            before, after = self._attribute_variants[(d[11] << 8 | d[12]) & _VARIANT_MASK]
            attributes = f"{before}{index + 1}{after}"
        installs = self._installs(index, d, first, last)
        in_app = "true" if d[17] & 2 else "false"
        return (
            f'{{"identifier":{_quote(identifier)},"attributes":{attributes},'
            f'"firstActive":"{_ts(first)}","lastActive":"{_ts(last)}","inAppEnabled":{in_app},'
            f'"createdAt":"{_ts(created)}","updatedAt":"{_ts(updated)}","installs":[{installs}]}}'
        )

    def user(self, index: int, identifier: str, anonymous: bool) -> dict[str, Any]:
        """The generated user at ``index`` as a fresh dict."""
        user: dict[str, Any] = json.loads(self.fragment(index, identifier, anonymous))
        return user

    @staticmethod
    def _attribute_variant(d: bytes) -> tuple[str, str]:
        """One attribute object as text around the email's number: ``(before, after)``."""
        first, last = _FIRST[d[14] % len(_FIRST)], _LAST[d[15] % len(_LAST)]
        local = _quote(f"{first}.{last}".lower().replace("'", ""))[1:-1]
        parts = [
            f'"isCustomer":{"true" if d[17] & 1 else "false"}',
            f'"age":{18 + d[16] % 62}',
        ]
        if d[18] < 160:
            parts.append(f'"score":{int.from_bytes(d[20:22], "little") % 10000 / 100!r}')
        if d[18] & 1:
            parts.append(f'"plan":"{_PLANS[d[19] % len(_PLANS)]}"')
        if d[19] < 64:
            city, country = _CITIES[d[21] % len(_CITIES)]
            parts.append(f'"address":{{"city":"{city}","country":"{country}"}}')
        if d[12] < 48:
            picked = [f'"{tag}"' for bit, tag in enumerate(_INTERESTS) if d[11] >> bit & 1]
            parts.append(f'"interests":[{",".join(picked)}]')
        if d[10] < 96:
            parts.append(f'"loyaltyPoints":{int.from_bytes(d[22:24], "little") % 5000}')
        return f'{{"name":{_quote(f"{first} {last}")},"email":"{local}', f'@example.com",{",".join(parts)}}}'

    def _installs(self, index: int, d: bytes, first: int, last: int) -> str:
        """One to three installs with every documented field."""
        h = self._install_hash.copy()
        h.update(index.to_bytes(8, "little"))
        hx = h.hexdigest()  # 32 hex digits of install id per install
        out = []
        for k in range(1 + d[9] % 3):
            b, x = 24 + 8 * k, 32 * k
            active = first + ((last - first) * (d[b + 6] << 8 | d[b + 7]) >> 16)
            os_bit = d[b] & 1
            out.append(
                f'{{"id":"{hx[x : x + 8]}-{hx[x + 8 : x + 12]}-4{hx[x + 13 : x + 16]}-a{hx[x + 17 : x + 20]}-'
                f'{hx[x + 20 : x + 32]}","subscribedToPushNotifications":{"true" if d[b] & 6 else "false"}'
                f'{_INSTALL_HEAD[os_bit * 30 + d[b + 1] % 30]}"lastActive":"{_HOUR_PREFIX[active // 3600]}'
                f'{_MIN_SEC[active % 3600]}",{_INSTALL_TAIL[os_bit * 360 + d[b + 2] % 360]}}}'
            )
        return ",".join(out)

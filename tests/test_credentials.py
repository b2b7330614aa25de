"""LoginCache: one renewal for many 401s, failed logins never repeated within a collection."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from exporter.collectors.credentials import LoginCache
from exporter.http import Deadline, UpstreamError


class Vendor:
    """Counts logins; answers with numbered credentials or refuses."""

    def __init__(self) -> None:
        self.logins = 0
        self.refuse = False
        self.lock = threading.Lock()

    def login(self, _deadline: Deadline) -> str:
        with self.lock:
            self.logins += 1
            if self.refuse:
                raise UpstreamError("auth", "login refused")
            return f"cred-{self.logins}"


def test_reused_across_collections() -> None:
    vendor = Vendor()
    cache = LoginCache(vendor.login)
    assert cache.get(Deadline(5)) == cache.get(Deadline(5)) == "cred-1"
    assert vendor.logins == 1


def test_many_concurrent_401s_share_one_renewal() -> None:
    vendor = Vendor()
    cache = LoginCache(vendor.login)
    stale = cache.get(Deadline(5))
    collection = Deadline(5)
    with ThreadPoolExecutor(8) as pool:
        renewed = set(pool.map(lambda _: cache.renew(stale, collection), range(8)))
    assert renewed == {"cred-2"}
    assert vendor.logins == 2


def test_failed_login_raised_again_for_the_rest_of_the_collection() -> None:
    vendor = Vendor()
    cache = LoginCache(vendor.login)
    stale = cache.get(Deadline(5))
    vendor.refuse = True
    collection = Deadline(5)
    for _ in range(5):
        with pytest.raises(UpstreamError, match="login refused"):
            cache.renew(stale, collection)
        with pytest.raises(UpstreamError, match="login refused"):
            cache.get(collection)
    assert vendor.logins == 2
    vendor.refuse = False
    assert cache.get(Deadline(5)) == "cred-3"  # the next collection tries again


def test_at_most_two_logins_per_collection_even_when_fresh_credentials_are_refused() -> None:
    vendor = Vendor()
    cache = LoginCache(vendor.login)
    collection = Deadline(5)
    first = cache.get(collection)
    second = cache.renew(first, collection)
    with pytest.raises(UpstreamError, match="refused again"):
        cache.renew(second, collection)
    cache.drop("cred-2")
    with pytest.raises(UpstreamError, match="refused again"):
        cache.get(collection)
    assert vendor.logins == 2


def test_still_valid_credential_kept_while_its_renewal_fails() -> None:
    vendor = Vendor()
    cache = LoginCache(vendor.login, fresh=lambda _c: False, usable=lambda c: c == "cred-1")
    assert cache.get(Deadline(5)) == "cred-1"
    vendor.refuse = True
    collection = Deadline(5)
    assert [cache.get(collection) for _ in range(4)] == ["cred-1"] * 4
    assert vendor.logins == 2  # one failed renewal for the whole collection
